"""`Pipeline.describe()` as Markdown for the Model tab."""

from __future__ import annotations


def _count(n: int) -> str:
    return f"{n:,} ({n / 1e6:.2f} M)"


def _table(config: dict, keys: list[str] | None = None) -> str:
    rows = [f"| `{k}` | {config[k]} |" for k in (keys or config) if k in config]
    return "| setting | value |\n|---|---|\n" + "\n".join(rows)


def describe_markdown(info: dict) -> dict[str, str]:
    """Readable summary of a pipeline description (presets, sizes, levels, order, device, sources):
    Markdown sections ``pipeline``, ``vae``, ``quantizer``, ``generator``."""
    source = info.get("source") or {}
    vae, quant = info["vae"], info["quantizer"]
    classes = info.get("classes") or []
    shown = ", ".join(classes[:20]) + (f", … ({len(classes)} in all)" if len(classes) > 20 else "")
    sections = {}
    lines = [
        "### Pipeline",
        f"- **device**: `{info['device']}` · **dtype**: {info['dtype']}",
        f"- **weights**: VAE `{source.get('vae') or 'built in code'}` · generator "
        f"`{source.get('generator') or ('built in code' if 'generator' in info else 'none')}`",
        f"- **channel order** (generation order of the {len(info['channel_order'])} channels): "
        f"`{info['channel_order']}`",
        f"- **classes** ({len(classes)}): {shown or '—'}",
    ]
    sections["pipeline"] = "\n".join(lines)
    sections["vae"] = f"### VAE — {_count(vae['parameters'])} parameters\n\n" + _table(vae["config"])
    sections["quantizer"] = f"### Quantizer — B = {quant.get('levels')} levels\n\n" + _table(quant)
    if "generator" in info:
        gen = info["generator"]
        config = gen["config"]
        lines = [
            f"### Generator — {_count(gen['parameters'])} parameters",
            f"Backbone: encoder {config.get('encoder_embed_dim')}×{config.get('encoder_depth')}, decoder "
            f"{config.get('decoder_embed_dim')}×{config.get('decoder_depth')}; channel head "
            f"{config.get('channel_embed_dim')}×{config.get('channel_depth')} ({config.get('head')}).",
            "",
            _table(config),
        ]
    else:
        lines = ["### Generator", "None loaded: this pipeline reconstructs only (start with `--generator PATH`)."]
    sections["generator"] = "\n".join(lines)
    return sections
