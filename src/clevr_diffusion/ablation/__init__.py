"""Ablations: variants of one training recipe trained on the same data and budget, scored
along the way, and compared in a table and plots (``clevr-diffusion ablate``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import install_lazy_exports

_EXPORTS: dict[str, str] = {
    "AblationPlan": ".plan",
    "PlanError": ".plan",
    "load_plan": ".plan",
    "vary_variants": ".plan",
    "AblationReport": ".report",
    "PointResult": ".runner",
    "run_ablation": ".runner",
}
"""Where each public name lives; its module is imported on first access (PEP 562)."""

if TYPE_CHECKING:  # what type checkers and the API docs see
    from .plan import AblationPlan, PlanError, load_plan, vary_variants
    from .report import AblationReport
    from .runner import PointResult, run_ablation
else:  # at run time a name's module is imported on its first use
    install_lazy_exports(__name__, _EXPORTS)

__all__ = ["AblationPlan", "AblationReport", "PlanError", "PointResult", "load_plan", "run_ablation", "vary_variants"]
