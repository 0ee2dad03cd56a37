"""Static pieces of a report page: the Vega JavaScript bundle, the stylesheet and the page template.

The bundle is inlined once per page so the file opens offline; it is cached per process because building it
takes about a second and a half.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import altair as alt
import jinja2

from saliency_lab.errors import SaliencyLabError
from saliency_lab.resources import shipped_dir

DEFAULT_TEMPLATE = "report.html.j2"
#: The templates folder (the repository's ``reports/``, shipped inside the package by a wheel).
TEMPLATES_DIR = shipped_dir("reports", DEFAULT_TEMPLATE)
STYLESHEET = "report.css"


def _vegalite_minor() -> str | None:
    """Altair's Vega-Lite schema as 'major.minor', so the bundle renders exactly the specs Altair writes."""
    version = alt.SCHEMA_VERSION.lstrip("v")
    parts = version.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else None


@functools.lru_cache(maxsize=2)
def vega_bundle() -> str:
    """Vega + Vega-Lite + vega-embed as one script, made safe to put inside a <script> element."""
    import vl_convert as vlc

    wanted = _vegalite_minor()
    available: list[str] = getattr(vlc, "get_vegalite_versions", lambda: [])()
    # vl_convert's stub marks `snippet` required, but the function has a default (the global-exports snippet).
    js_bundle: Any = vlc.javascript_bundle
    bundle = js_bundle(vl_version=wanted) if wanted in available else js_bundle()
    # A literal "</script" inside the JavaScript would end the element early; "<\/" is the same string in JS.
    return bundle.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")


def template_environment(templates_dir: Path | None = None) -> jinja2.Environment:
    """The Jinja2 environment over the templates folder (default: the shipped reports/)."""
    folder = Path(templates_dir) if templates_dir else TEMPLATES_DIR
    if not (folder / DEFAULT_TEMPLATE).is_file():
        raise SaliencyLabError(
            f"report template {folder / DEFAULT_TEMPLATE} not found; pass a templates folder holding "
            f"{DEFAULT_TEMPLATE} (the repository's reports/ folder)"
        )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def stylesheet(templates_dir: Path | None = None) -> str:
    """The report stylesheet text (empty when the folder has none)."""
    folder = Path(templates_dir) if templates_dir else TEMPLATES_DIR
    path = folder / STYLESHEET
    return path.read_text(encoding="utf-8") if path.is_file() else ""


# Context keys holding trusted raw text for <style>/<script> elements, where HTML escaping would corrupt them.
# Each is made safe for its element before it gets here (see vega_bundle and Charts.to_script_json).
RAW_KEYS = ("css", "vega_js", "charts_json", "explorer_json", "explorer_js")


def script(name: str, templates_dir: Path | None = None) -> str:
    """A plain JavaScript file shipped beside the template, made safe to inline in a <script> element."""
    folder = Path(templates_dir) if templates_dir else TEMPLATES_DIR
    path = folder / name
    if not path.is_file():
        path = TEMPLATES_DIR / name  # a custom templates folder may hold only the template and stylesheet
    text = path.read_text(encoding="utf-8")
    return text.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")


def render_page(context: dict, templates_dir: Path | None = None) -> str:
    """Render the page template; everything except RAW_KEYS is autoescaped."""
    from markupsafe import Markup

    env = template_environment(templates_dir)
    ctx = dict(context)
    for key in RAW_KEYS:
        ctx[key] = Markup(ctx.get(key) or "")
    return env.get_template(DEFAULT_TEMPLATE).render(**ctx)
