"""Ablation: one variant per block (its simpler alternative), a summary in words, the block to refine."""

from __future__ import annotations

from typing import Any

from ...model import AblationResult, AblationVariant, BlockChoice
from ...script import ScriptError, get_block, replace_block
from ..base import BrainContext
from .blocks import REFINABLE
from .defaults import library_default_spec, main_model, simple_features, simple_preprocess, simple_train
from .plans import Settings, format_set_line
from .refine import expected_moves, plan_next
from .templates import read_config, render_block


def simpler_config(block: str, config: Any) -> tuple[Any, str] | None:
    """The block's simpler alternative and its description, or None when it has none."""
    if block == "preprocess" and isinstance(config, dict):
        return simple_preprocess(config), (
            "simplest preprocessing: mean imputation, no missing indicators, "
            "ordinal encoding for every model, no rare-category grouping"
        )
    if block == "features" and isinstance(config, dict):
        return simple_features(config), "no engineered features: raw numeric/categorical columns only"
    if block == "model" and isinstance(config, list) and config:
        main = main_model(config)
        kept = "" if len(config) == 1 else f" (keeping only {main['name']}, the strongest of {len(config)})"
        return [
            library_default_spec(main)
        ], f"single {main['name']} with library-default hyperparameters{kept}"
    if block == "train" and isinstance(config, dict):
        return simple_train(config), "no early stopping, no target transform, no class weights, one seed"
    return None


def ablation_settings(block: str, config: Any, simpler: Any) -> Settings:
    """The `Set:` settings that turn `config` into `simpler` (used to adopt a simplification)."""
    if block == "model":
        keep = simpler[0]
        out: Settings = {f"{keep['name']}.params": keep["params"], f"{keep['name']}.weight": 1.0}
        dropped = [m["name"] for m in config if m["name"] != keep["name"]]
        if dropped:
            out["drop_model"] = dropped if len(dropped) > 1 else dropped[0]
        return out
    return {k: v for k, v in simpler.items() if config.get(k) != v}


def write_ablation(ctx: BrainContext, code: str) -> list[AblationVariant]:
    variants: list[AblationVariant] = []
    for block in REFINABLE:
        config = read_config(code, block)
        alt = simpler_config(block, config)
        if alt is None:
            continue
        simpler, description = alt
        if simpler == config:
            continue  # already as simple as it gets: nothing to learn from this ablation
        try:
            variant = replace_block(code, block, render_block(block, simpler))
        except ScriptError:
            continue
        if variant != code:
            variants.append(AblationVariant(block=block, description=description, code=variant))
    return variants


def summarize(ctx: BrainContext, results: list[AblationResult]) -> str:
    task = ctx.task
    direction = "higher" if task.higher_is_better else "lower"
    scored = [r for r in results if r.delta is not None]
    failed = [r for r in results if r.delta is None]
    if not results:
        return "No ablation variant was run: the script has no block with a simpler alternative."
    baseline = next((r.baseline for r in results if r.baseline is not None), None)
    lines = [
        f"Baseline {task.metric} = {baseline:.6g} ({direction} is better)."
        if baseline is not None
        else f"The unchanged script produced no score ({task.metric}, {direction} is better)."
    ]
    ranked = sorted(scored, key=lambda r: -(r.delta or 0.0))
    for i, r in enumerate(ranked):
        if r.delta > 0:
            verb = "matters most" if i == 0 else "also helps"
            lines.append(
                f"The {r.block} block {verb}: with {r.description} the score becomes {r.score:.6g}, "
                f"so the block's current choices are worth {r.delta:+.6g}."
            )
        elif r.delta < 0:
            lines.append(
                f"The {r.block} block currently hurts: {r.description} scores {r.score:.6g}, "
                f"better by {-r.delta:.6g} — its choices need rethinking."
            )
        else:
            lines.append(f"The {r.block} block makes no measurable difference ({r.description}).")
    for r in failed:
        lines.append(f"The {r.block} variant ({r.description}) produced no score, so its impact is unknown.")
    return " ".join(lines)


def choose_block(
    ctx: BrainContext, code: str, results: list[AblationResult], refined: list[str]
) -> BlockChoice:
    """Largest positive delta among blocks not yet refined; else the block whose simplification helped
    most (adopt the simpler alternative); else the first refinable block with catalogue moves."""
    candidates = [
        r for r in results if r.block in REFINABLE and r.block not in refined and _has_block(code, r.block)
    ]
    positive = [
        r for r in candidates if r.delta is not None and r.delta > 0 and expected_moves(ctx, code, r.block)
    ]
    if positive:
        top = max(positive, key=lambda r: r.delta or 0.0)  # max keeps the first on ties (block order)
        plan = plan_next(ctx, code, top.block, [])
        return BlockChoice(
            top.block,
            plan,
            f"ablating {top.block} costs {top.delta:.6g} — the most impactful block not refined yet",
        )
    negative = [r for r in candidates if r.delta is not None and r.delta < 0]
    if negative:
        worst = min(negative, key=lambda r: r.delta or 0.0)
        config = read_config(code, worst.block)
        alt = simpler_config(worst.block, config)
        if alt is not None:
            settings = ablation_settings(worst.block, config, alt[0])
            if settings:
                plan = (
                    f"Refine the {worst.block} block. Ablation showed the simpler alternative "
                    f"({worst.description}) "
                    f"scores better by {-worst.delta:.6g}: adopt it.\n{format_set_line(settings)}"
                )
                return BlockChoice(worst.block, plan, f"simplifying {worst.block} improved the score")
    # No measured signal: the blocks where the catalogue usually finds gains come first.
    for block in ("model", "features", "train", "preprocess"):
        if block not in refined and _has_block(code, block) and expected_moves(ctx, code, block) >= 2:
            return BlockChoice(
                block,
                plan_next(ctx, code, block, []),
                "no ablation result singles out a block: first refinable block not refined yet",
            )
    block = next((b for b in REFINABLE if _has_block(code, b)), "model")
    return BlockChoice(
        block, plan_next(ctx, code, block, []), "every block was refined already; refining again"
    )


def _has_block(code: str, block: str) -> bool:
    try:
        get_block(code, block)
        return True
    except ScriptError:
        return False
