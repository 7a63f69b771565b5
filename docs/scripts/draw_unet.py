"""Draw the default ConditionalUNet as an SVG diagram: ``docs/images/unet.svg``.

Everything in the picture (stages, channels, resolutions, attention, skips, embedding widths,
parameter count) is read from ``UNetConfig()`` and the model built from it, so rerun this
script whenever the default configuration changes:

    python docs/scripts/draw_unet.py            # writes docs/images/unet.svg
    python docs/scripts/draw_unet.py out.svg    # or another path

The SVG is plain hand-written markup (boxes, arrows, text) with a white background, so it
stays legible in the light and the dark theme of the docs.
"""

from __future__ import annotations

import sys
from html import escape
from pathlib import Path

from clevr_diffusion import ConditionalUNet, UNetConfig

WIDTH = 940
BOX_W = 270
BOX_H = 64
ROW_GAP = 52
LEFT_X = 40
RIGHT_X = WIDTH - 40 - BOX_W
FIRST_ROW_Y = 170

ENCODER = "#dbeafe"
DECODER = "#dcfce7"
MIDDLE = "#ede9fe"
NEUTRAL = "#f3f4f6"
ATTENTION = "#ea580c"
LINE = "#374151"


class Svg:
    """A tiny SVG writer: just the shapes this diagram needs."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.parts: list[str] = []

    def box(self, x: float, y: float, w: float, h: float, fill: str, lines: list[str], *, attention: bool = False) -> None:
        stroke, stroke_width = (ATTENTION, 3) if attention else (LINE, 1.2)
        self.parts.append(
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="{stroke_width}"/>'
        )
        top = y + h / 2 - (len(lines) - 1) * 8.5
        for i, line in enumerate(lines):
            weight = ' font-weight="bold"' if i == 0 else ""
            self.text(x + w / 2, top + i * 17, line, anchor="middle", extra=weight)

    def text(self, x: float, y: float, text: str, *, anchor: str = "start", size: int = 13, extra: str = "") -> None:
        self.parts.append(
            f'<text x="{x}" y="{y}" font-size="{size}" text-anchor="{anchor}" '
            f'dominant-baseline="middle"{extra}>{escape(text)}</text>'
        )

    def arrow(self, points: list[tuple[float, float]], *, dashed: bool = False, colour: str = LINE) -> None:
        path = " ".join(f"{'M' if i == 0 else 'L'} {x} {y}" for i, (x, y) in enumerate(points))
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        marker = "arrow-accent" if colour != LINE else "arrow"
        self.parts.append(
            f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.6"{dash} '
            f'marker-end="url(#{marker})"/>'
        )

    def render(self) -> str:
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
            f'viewBox="0 0 {self.width} {self.height}" font-family="Helvetica, Arial, sans-serif" '
            f'fill="#111827">\n'
            "<title>ConditionalUNet with the default UNetConfig</title>\n"
            "<defs>\n"
            f'<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" '
            f'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{LINE}"/></marker>\n'
            f'<marker id="arrow-accent" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
            f'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
            f'fill="#2563eb"/></marker>\n'
            "</defs>\n"
            f'<rect width="{self.width}" height="{self.height}" fill="#ffffff"/>\n'
        )
        return head + "\n".join(self.parts) + "\n</svg>\n"


def blocks_text(count: int, attention: bool) -> str:
    unit = "(ResBlock → SelfAttention)" if attention else "ResBlock"
    return f"{count} × {unit}"


def draw(config: UNetConfig) -> str:
    channels = config.stage_channels
    stages = len(channels)
    size = config.sample_size
    sides = [size // 2**i for i in range(stages)]
    params = ConditionalUNet(config).num_parameters
    row_y = [FIRST_ROW_Y + i * (BOX_H + ROW_GAP) for i in range(stages)]
    mid_y = row_y[-1] + BOX_H + ROW_GAP + 10
    cond_y = mid_y + BOX_H + 60
    svg = Svg(WIDTH, cond_y + 170)

    svg.text(WIDTH / 2, 26, f"ConditionalUNet, default UNetConfig: {params:,} parameters", anchor="middle", size=18,
             extra=' font-weight="bold"')
    svg.text(WIDTH / 2, 50, f"shown for {size} × {size} px inputs; every ResBlock and the output norm also take the "
             "conditioning vector (bottom)", anchor="middle", size=12)

    # Input and output.
    left_c, right_c = LEFT_X + BOX_W / 2, RIGHT_X + BOX_W / 2
    svg.box(LEFT_X, 72, BOX_W, BOX_H, NEUTRAL, [
        f"Input x_t: {config.in_channels} × {size} × {size}",
        f"conv 3×3: {config.in_channels} → {channels[0]} ch",
    ])
    svg.arrow([(left_c, 72 + BOX_H), (left_c, row_y[0])])
    svg.box(RIGHT_X, 72, BOX_W, BOX_H, NEUTRAL, [
        f"Output: {config.out_channels} × {size} × {size} (ε or v)",
        f"AdaGN → SiLU → conv 3×3: {channels[0]} → {config.out_channels}",
    ])
    svg.arrow([(right_c, row_y[0]), (right_c, 72 + BOX_H)])

    previous = channels[0]
    for i, (ch, side, y) in enumerate(zip(channels, sides, row_y, strict=True)):
        attention = i in config.attention_stages
        # Encoder stage i.
        svg.box(LEFT_X, y, BOX_W, BOX_H, ENCODER, [
            f"Encoder stage {i}",
            blocks_text(config.blocks_per_stage, attention),
            f"{previous} → {ch} ch · {side} × {side}",
        ], attention=attention)
        # Decoder stage i: its first block fuses the skip of encoder stage i.
        incoming = channels[i + 1] if i + 1 < stages else channels[-1]
        svg.box(RIGHT_X, y, BOX_W, BOX_H, DECODER, [
            f"Decoder stage {i}",
            blocks_text(config.decoder_blocks_per_stage, attention),
            f"{incoming} + {ch} → {ch} ch · {side} × {side}",
        ], attention=attention)
        # Skip connection.
        svg.arrow([(LEFT_X + BOX_W, y + BOX_H / 2), (RIGHT_X, y + BOX_H / 2)], dashed=True, colour="#2563eb")
        svg.text(WIDTH / 2, y + BOX_H / 2 - 11, f"skip: concat {ch} ch", anchor="middle", size=12)
        if i + 1 < stages:
            gap_top, gap_bottom = y + BOX_H, row_y[i + 1]
            svg.arrow([(left_c, gap_top), (left_c, gap_bottom)])
            svg.text(left_c + 8, (gap_top + gap_bottom) / 2, "Downsample ×½ (conv 3×3, stride 2)", size=12)
            svg.arrow([(right_c, gap_bottom), (right_c, gap_top)])
            svg.text(right_c - 8, (gap_top + gap_bottom) / 2, "Upsample ×2 (conv-T 4×4, stride 2)", anchor="end",
                     size=12)
        previous = ch

    # Bottleneck.
    mid_w = 330
    mid_x = WIDTH / 2 - mid_w / 2
    middle = ["ResBlock", "SelfAttention", "ResBlock"] if config.bottleneck_attention else ["ResBlock", "ResBlock"]
    svg.box(mid_x, mid_y, mid_w, BOX_H, MIDDLE, [
        "Bottleneck",
        " → ".join(middle),
        f"{channels[-1]} ch · {sides[-1]} × {sides[-1]}",
    ], attention=config.bottleneck_attention)
    svg.arrow([(left_c, row_y[-1] + BOX_H), (left_c, mid_y + BOX_H / 2), (mid_x, mid_y + BOX_H / 2)])
    svg.arrow([(mid_x + mid_w, mid_y + BOX_H / 2), (right_c, mid_y + BOX_H / 2), (right_c, row_y[-1] + BOX_H)])

    # Conditioning.
    emb = config.embed_dim
    svg.text(LEFT_X, cond_y - 14, "Conditioning", size=14, extra=' font-weight="bold"')
    small_w, gap = 280, 36
    svg.box(LEFT_X, cond_y, small_w, 52, NEUTRAL, [
        "timestep t",
        f"sinusoidal {config.base_channels} → MLP → {emb}",
    ])
    svg.box(LEFT_X, cond_y + 70, small_w, 52, NEUTRAL, [
        f"labels y: {config.num_labels}-d multi-hot",
        f"MLP → {emb}  (all-zero = unconditional)",
    ])
    cat_x = LEFT_X + small_w + gap
    svg.box(cat_x, cond_y + 35, 170, 52, NEUTRAL, ["concat", f"cond: {2 * emb}"])
    svg.arrow([(LEFT_X + small_w, cond_y + 26), (cat_x, cond_y + 52)])
    svg.arrow([(LEFT_X + small_w, cond_y + 96), (cat_x, cond_y + 70)])
    note_x = cat_x + 170 + gap
    svg.arrow([(cat_x + 170, cond_y + 61), (note_x - 6, cond_y + 61)])
    svg.text(note_x, cond_y + 44, "to every ResBlock and the output norm:", size=12)
    svg.text(note_x, cond_y + 61, "AdaGN: GN(x) · (1 + γ) + β, (γ, β) = Linear(cond)", size=12)
    svg.text(note_x, cond_y + 78, "ResBlock: + Linear(cond) after its first conv", size=12)

    # Legend.
    legend_y = cond_y + 148
    x = LEFT_X
    for fill, label, attention in ((ENCODER, "encoder", False), (DECODER, "decoder", False),
                                   (MIDDLE, "bottleneck", False), ("#ffffff", "has self-attention", True)):
        stroke = f'stroke="{ATTENTION}" stroke-width="3"' if attention else f'stroke="{LINE}"'
        svg.parts.append(f'<rect x="{x}" y="{legend_y - 8}" width="22" height="16" rx="3" fill="{fill}" {stroke}/>')
        svg.text(x + 30, legend_y, label, size=12)
        x += 60 + 8 * len(label)
    svg.parts.append(f'<path d="M {x} {legend_y} L {x + 30} {legend_y}" stroke="#2563eb" stroke-width="1.6" '
                     'stroke-dasharray="6 4"/>')
    svg.text(x + 38, legend_y, "skip connection", size=12)
    return svg.render()


def main() -> None:
    default = Path(__file__).resolve().parents[1] / "images" / "unet.svg"
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(draw(UNetConfig()), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
