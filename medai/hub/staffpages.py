"""Pages staff open: submitted HTML sanitised, a strict content security policy, MathJax local.

Instructors and TAs read what trainees wrote: the formgrader's manual grading view renders each
submitted notebook with nbconvert, and ``nbgrader generate_feedback`` writes HTML from it. A
markdown answer or a cell output is HTML the trainee chose, so, unprotected, a ``<script>`` in it
runs with the grader's session. Three layers stop it:

1. **Sanitising** (:func:`clean_html`, :class:`StaffHTMLExporter`): every markdown cell and
   every HTML, Markdown or JavaScript output is cleaned with ammonia (``nh3``) before it reaches
   the page: no scripts, event handlers, ``javascript:`` links, frames, forms or styles survive.
   nbconvert's own ``sanitize_html`` is on too, but nbgrader's formgrade and feedback templates
   render markdown cells without it, and nbconvert's ``clean_html`` escapes headings,
   paragraphs and images, which would make answers unreadable; hence the exporter subclass.

2. **A content security policy with nonces** on every formgrader page (this module is the
   formgrader's Jupyter server extension; it loads nbgrader's formgrader itself, then hardens
   it). nbgrader's templates carry inline scripts (``var submission_id = ...``) and a few inline
   ``onclick`` handlers, so ``script-src 'self'`` alone would break them and ``'unsafe-inline'``
   would let injected script run too. Instead, :class:`MarkTrustedScripts` rewrites the *source*
   of the trusted template files (nbgrader's and ours) when Jinja loads them, giving each
   ``<script`` tag a placeholder nonce; :class:`StaffPageCSP` replaces the placeholder with a
   fresh random nonce in each response and sends the matching header. Markup that comes from a
   submission is inserted when the template *renders*, after that rewrite, so it never carries
   the nonce: even if something slipped past the sanitiser, the browser would not run it. The
   template's own inline handlers are allowed by their hashes (``'unsafe-hashes'``), so only
   those exact handler texts run. The rest of the formgrader's server (its JupyterLab, file
   views) gets a policy without inline script; JupyterLab needs ``'unsafe-eval'`` there.

3. **Own origins** (:mod:`medai.hub.origins`): the formgrader is a service on its own host, so
   even a script that ran could not use the hub's session or the trainee's server's.

MathJax comes from ``jupyter-server-mathjax`` (MathJax 2.7, the version nbgrader's scripts call)
served by the formgrader itself at ``<base>/static/jupyter_server_mathjax/``; the templates in
``templates/nbconvert`` point nbgrader's ``mathjax()`` macro at it instead of a CDN.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import secrets
from pathlib import Path

import nh3
from jinja2 import BaseLoader, Environment, FileSystemLoader, TemplateNotFound, pass_context
from nbconvert.exporters import HTMLExporter
from tornado.web import OutputTransform
from traitlets import default, validate

from medai.paths import package_file

EXTENSION = "medai.hub.staffpages"
STAFF_EXPORTER = "medai.hub.staffpages.StaffHTMLExporter"
TEMPLATES = str(package_file("hub", "templates", "nbconvert"))

# How the hub starts the formgrader's server: this module instead of nbgrader's formgrader
# extension (it loads that one itself), MathJax served locally, and sanitised nbconvert views.
FORMGRADER_SERVER_ARGS = [
    "--ServerApp.jpserver_extensions=nbgrader.server_extensions.formgrader=False",
    f"--ServerApp.jpserver_extensions={EXTENSION}=True",
    "--ServerApp.jpserver_extensions=jupyter_server_mathjax=True",
    "--HTMLExporter.sanitize_html=True",
]

# ---------------------------------------------------------------------------------------------
# 1. sanitising

# ammonia's default allowlist (paragraphs, headings, lists, tables, images, links, code) plus
# what notebooks commonly render (class for styling, e.g. pandas' tables); no style attributes.
_CLASS = {"class"}


def _keep_attribute(tag: str, attr: str, value: str) -> str | None:
    # images may be data URIs (attachments, embedded plots), but only raster or SVG images:
    # an image context runs no script. Anything else on a data: URL is dropped.
    if value.lower().lstrip().startswith("data:"):
        ok = tag == "img" and attr == "src"
        ok = ok and re.match(r"data:image/(png|jpeg|gif|webp|svg\+xml)[;,]", value.strip(), re.I)
        return value if ok else None
    return value


def clean_html(html: str) -> str:
    """Sanitise HTML a trainee controls for display to staff (ammonia, via nh3)."""
    if isinstance(html, bytes):
        html = html.decode("utf-8", "replace")
    return nh3.clean(
        str(html),
        generic_attribute_prefixes=set(),
        attributes={**nh3.ALLOWED_ATTRIBUTES, "*": {"class", "title", "lang", "dir"}},
        url_schemes={"http", "https", "mailto", "data"},
        attribute_filter=_keep_attribute,
        clean_content_tags={"script", "style"},
    )


class StaffHTMLExporter(HTMLExporter):
    """The HTML exporter for pages staff open (formgrader view, feedback).

    Sanitises by default, cleans markdown cells too (nbgrader's templates leave them out) and
    uses :func:`clean_html` wherever nbconvert's templates ask for ``clean_html``; renders
    application/javascript outputs as nothing (nbconvert's templates drop them when
    sanitising); finds this package's templates first, so ``mathjax()`` loads MathJax locally.
    """

    @default("sanitize_html")
    def _sanitize_default(self) -> bool:
        return True

    @validate("extra_template_basedirs")
    def _ours_first(self, proposal):
        dirs = [d for d in proposal["value"] if d != TEMPLATES]
        return [TEMPLATES, *dirs]

    @default("extra_template_basedirs")
    def _default_basedirs(self):
        return [TEMPLATES, *super()._default_extra_template_basedirs()]

    def default_filters(self):
        for name, fn in super().default_filters():
            yield name, (clean_html if name == "clean_html" else fn)

    @pass_context
    def markdown2html(self, context, source):
        html = super().markdown2html(context, source)
        return clean_html(html) if self.sanitize_html else html


# ---------------------------------------------------------------------------------------------
# 2. content security policy with nonces

# Written into trusted template sources, replaced by each response's nonce. Random per process
# and never sent (every response has it replaced), so submitted markup cannot carry it.
PLACEHOLDER = "medai-nonce-" + secrets.token_hex(16)
_SCRIPT_TAG = re.compile(r"<script\b", re.I)
_HANDLER = re.compile(r"""\son[a-z]+\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
# sha256 sources of the inline event handlers written in trusted templates
TRUSTED_HANDLER_HASHES: set[str] = set()


def _sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def mark_trusted(source: str) -> str:
    """Give every ``<script`` tag in a trusted template source the placeholder nonce, and
    record the hashes of its inline handlers."""
    for m in _HANDLER.finditer(source):
        TRUSTED_HANDLER_HASHES.add(_sha256_source(m.group(1) or m.group(2) or ""))
    return _SCRIPT_TAG.sub(f'<script nonce="{PLACEHOLDER}"', source)


class MarkTrustedScripts(BaseLoader):
    """A Jinja loader for the templates in ``trusted`` folders, with :func:`mark_trusted`.

    It searches ``search_path`` in order, as the loader it sits in front of does; a template
    whose first match lies outside the trusted folders is left to that loader (unmarked), so
    the choice of file never changes, only whether its scripts get the nonce.
    """

    def __init__(self, search_path: list[str], trusted: list[str]):
        self.fs = FileSystemLoader(search_path)
        self.trusted = [str(Path(t).resolve()) for t in trusted]

    def get_source(self, environment, template):
        source, filename, uptodate = self.fs.get_source(environment, template)
        real = str(Path(filename).resolve())
        if not any(real == t or real.startswith(t + "/") for t in self.trusted):
            raise TemplateNotFound(template)
        return mark_trusted(source), filename, uptodate


def formgrader_csp(nonce: str, origin: str, base_url: str) -> str:
    """The policy of formgrader pages: only nonce'd scripts, nbgrader's static scripts and the
    local MathJax (which loads its parts itself) run; no plugins, frames of others or base."""
    static = [
        f"{origin}{base_url}formgrader/static/",
        f"{origin}{base_url}static/jupyter_server_mathjax/",
    ]
    hashes = sorted(TRUSTED_HANDLER_HASHES)
    script = ["script-src", f"'nonce-{nonce}'", *(["'unsafe-hashes'", *hashes] if hashes else [])]
    return "; ".join(
        [
            "default-src 'none'",
            " ".join(script + static),
            "style-src 'self' 'unsafe-inline'",  # nbconvert and MathJax write inline styles
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            "object-src 'none'",
            "frame-ancestors 'self'",
            f"report-uri {base_url}api/security/csp-report",
        ]
    )


def server_csp(base_url: str) -> str:
    """The policy of the formgrader's other pages (JupyterLab, file and nbconvert views): no
    inline script at all; JupyterLab's own bundles need 'unsafe-eval' (schema validation)."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self' 'unsafe-eval'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "frame-src 'self' blob: data:",
            "object-src 'none'",
            "base-uri 'self'",
            "frame-ancestors 'self'",
            f"report-uri {base_url}api/security/csp-report",
        ]
    )


class StaffPageCSP(OutputTransform):
    """Per response: a fresh nonce for formgrader pages, put in place of the placeholder and in
    the Content-Security-Policy header. (Tornado applies transforms to every response.)"""

    def __init__(self, request, base_url: str = "/"):
        super().__init__(request)
        self.request = request
        self.base_url = base_url
        self.nonce = secrets.token_urlsafe(18).encode()

    def _replace(self, chunk: bytes) -> bytes:
        return chunk.replace(PLACEHOLDER.encode(), self.nonce)

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        if self.request.path.startswith(self.base_url + "formgrader"):
            origin = f"{self.request.protocol}://{self.request.host}"
            nonce = self.nonce.decode()
            headers["Content-Security-Policy"] = formgrader_csp(nonce, origin, self.base_url)
            # A cached copy holds an old nonce: never revalidate, fetch afresh.
            headers.pop("Etag", None)
            headers["Cache-Control"] = "no-store"
        if PLACEHOLDER.encode() in chunk:
            chunk = self._replace(chunk)
            if "Content-Length" in headers:
                headers["Content-Length"] = str(len(chunk))
        return status_code, headers, chunk

    def transform_chunk(self, chunk, finishing):
        return self._replace(chunk)


# ---------------------------------------------------------------------------------------------
# the formgrader's server extension


def _jupyter_server_extension_points():
    return [{"module": EXTENSION}]


def _load_jupyter_server_extension(serverapp) -> None:
    from nbgrader.server_extensions.formgrader import formgrader, handlers

    formgrader.load_jupyter_server_extension(serverapp)
    web_app = serverapp.web_app
    settings = web_app.settings
    trusted = [handlers.template_path, TEMPLATES]

    # nbgrader's own pages (.tpl): scripts marked; values escaped (they reach inline scripts,
    # e.g. an assignment id taken from the URL)
    settings["nbgrader_jinja2_env"] = Environment(
        loader=MarkTrustedScripts([handlers.template_path], trusted), autoescape=True
    )

    # the manual grading view: sanitised, scripts of trusted templates marked
    old = settings["nbgrader_exporter"]
    exporter = StaffHTMLExporter(config=old.config, sanitize_html=True)
    exporter.extra_loaders = [MarkTrustedScripts(list(exporter.template_paths), trusted)]
    settings["nbgrader_exporter"] = exporter

    base_url = serverapp.base_url
    settings.setdefault("headers", {})["Content-Security-Policy"] = server_csp(base_url)
    web_app.transforms.insert(0, functools.partial(StaffPageCSP, base_url=base_url))
    serverapp.log.info("medai: formgrader loaded with sanitised views and a nonce CSP")
