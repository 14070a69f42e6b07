"""The memory plan as an SVG picture: one stacked bar per GPU. Pure string building."""

from __future__ import annotations

from html import escape

from aiprov.plan import SAFE_FRACTION, HostPlan

# One hue per service (in the order the host lists them); weights in the full
# colour, KV cache lighter, the reserve for activations grey.
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
LIGHT = ["#aec7e8", "#ff9896", "#98df8a", "#c5b0d5", "#ffbb78", "#9edae5", "#c49c94", "#f7b6d2"]
RESERVE = "#bdbdbd"
CONTEXT = "#636363"
FREE = "#ffffff"
LABEL_W, BAR_W, ROW_H, BAR_H = 70, 640, 30, 20


def _rect(x: float, y: float, w: float, fill: str, title: str) -> str:
    return (
        f'<rect x="{x:.1f}" y="{y}" width="{max(w, 0):.1f}" height="{BAR_H}" fill="{fill}" '
        f'stroke="#333" stroke-width="0.5"><title>{escape(title)}</title></rect>'
    )


def _text(
    x: float, y: float, text: str, size: int = 12, weight: str = "normal", fill: str = "#000"
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y}" font-family="sans-serif" font-size="{size}" '
        f'font-weight="{weight}" fill="{fill}">{escape(text)}</text>'
    )


def render(plans: list[HostPlan]) -> str:
    parts: list[str] = []
    y = 20
    for host in plans:
        colors = {sp.service.name: i % len(PALETTE) for i, sp in enumerate(host.services)}
        title = f"{host.host}: {host.gpu_count} × {host.gpu_family or '?'}"
        if host.gpu_memory_gib:
            title += f" {host.gpu_memory_gib:g} GiB"
        parts.append(_text(10, y, title, 14, "bold"))
        y += 12
        if not host.gpus:
            y += 16
            parts.append(_text(10, y, "no GPUs"))
            y += 20
            continue
        # An over-subscribed GPU widens the host's scale so its overflow shows past a red line.
        widest = max(max(g.total_gib, g.total_gib - g.free_gib) for g in host.gpus)
        for gpu in host.gpus:
            scale = BAR_W / widest if widest else 0
            parts.append(_text(10, y + 15, f"GPU {gpu.index}"))
            x = float(LABEL_W)
            for share in gpu.shares:
                # Other stacks' shares (MinerU) are not in host.services: next colours.
                c = colors.setdefault(share.service, len(colors) % len(PALETTE))
                pieces = [
                    (share.weights_gib, PALETTE[c], "weights"),
                    (share.reserve_gib, RESERVE, "activations and CUDA graphs"),
                    (share.kv_cache_gib, LIGHT[c], "KV cache"),
                ]
                used = 0.0
                for size, fill, what in pieces:
                    if size is None:
                        continue
                    size = min(size, share.share_gib - used)
                    if size <= 0:
                        continue
                    parts.append(
                        _rect(x, y, size * scale, fill, f"{share.service}: {what} {size:.1f} GiB")
                    )
                    x += size * scale
                    used += size
                if used < share.share_gib:  # facts unknown: the share without its split
                    rest = share.share_gib - used
                    parts.append(
                        _rect(
                            x, y, rest * scale, LIGHT[c], f"{share.service}: share {rest:.1f} GiB"
                        )
                    )
                    x += rest * scale
                parts.append(
                    _rect(
                        x, y, share.context_gib * scale, CONTEXT, f"{share.service}: CUDA context"
                    )
                )
                x += share.context_gib * scale
            free = gpu.free_gib
            if free > 0:
                parts.append(_rect(x, y, free * scale, FREE, f"free {free:.1f} GiB"))
            over = free < 0 or gpu.fraction > SAFE_FRACTION
            if free < 0:
                edge = LABEL_W + gpu.total_gib * scale
                parts.append(
                    f'<line x1="{edge:.1f}" y1="{y - 3}" x2="{edge:.1f}" y2="{y + BAR_H + 3}" '
                    'stroke="#d00" stroke-width="2"><title>the card ends here</title></line>'
                )
            label = f"{gpu.total_gib - free:.1f}/{gpu.total_gib:g} GiB · Σ {gpu.fraction:.2f}"
            parts.append(
                _text(
                    LABEL_W + BAR_W + 8,
                    y + 15,
                    label,
                    11,
                    "bold" if over else "normal",
                    "#d00" if over else "#000",
                )
            )
            y += ROW_H
        # Legend: one swatch per service, then the shared colours.
        x = float(LABEL_W)
        y += 4
        legend = [
            (PALETTE[colors[sp.service.name]], f"{sp.service.name} weights") for sp in host.services
        ]
        legend += [
            (LIGHT[colors[sp.service.name]], f"{sp.service.name} KV") for sp in host.services
        ]
        legend += [(RESERVE, "activations"), (CONTEXT, "CUDA context"), (FREE, "free")]
        for fill, name in legend:
            width = 18 + 7 * len(name)
            if x + width > LABEL_W + BAR_W + 150:
                x, y = float(LABEL_W), y + 18
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="12" height="12" fill="{fill}" stroke="#333" '
                'stroke-width="0.5"/>'
            )
            parts.append(_text(x + 16, y + 10, name, 11))
            x += width
        y += 36
    width = LABEL_W + BAR_W + 160
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
        f'viewBox="0 0 {width} {y}">\n<rect width="100%" height="100%" fill="white"/>\n'
        + "\n".join(parts)
        + "\n</svg>\n"
    )
