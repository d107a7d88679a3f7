"""A hostile submission for the hello lab: script in every place a notebook can carry HTML.

Every payload, if it ever runs, leaves three traces the tests look for: it appends its name to
``window.top.__pwned`` (or its own window's, where top is out of reach), sets the document title
to ``PWNED``, and requests ``/pwned/<name>`` on its page's origin. It also tries what the script
in the original finding did: create an API token for whoever is looking, through the hub API
with their cookies.
"""

from __future__ import annotations

import html

import nbformat


def js(name: str, hub: str = "") -> str:
    """The script each payload runs (one line, no double quotes: it sits in attributes).

    After leaving its traces it repeats the attack of the original finding: read the hub's
    XSRF token from a hub page with the viewer's cookies, then create an API token (note
    ``pwned``) for the viewer, here the instructor ``teacher``.
    """
    return (
        "(function(){"
        "var w=window;try{w=window.top;w.__pwned}catch(e){w=window}"
        f"w.__pwned=(w.__pwned||'')+'{name};';"
        "document.title='PWNED';"
        f"try{{fetch('/pwned/{name}')}}catch(e){{}}"
        f"var h='{hub}';"
        "fetch(h+'/hub/token',{credentials:'include'}).then(function(r){return r.text()})"
        ".then(function(t){var m=t.match(/xsrf_token:\\s*.([^\\x22']+)/);"
        "return fetch(h+'/hub/api/users/teacher/tokens',{method:'POST',credentials:'include',"
        "headers:{'X-XSRFToken':m?m[1]:'','Content-Type':'application/json'},"
        "body:JSON.stringify({note:'pwned',expires_in:3600})})})"
        ".then(function(r){w.__token_status=r.status}).catch(function(e){w.__token_error=''+e})"
        "})()"
    )


def markdown_answer(hub: str = "") -> str:
    a = lambda n: html.escape(js(n, hub), quote=True)  # noqa: E731
    return "\n\n".join(
        [
            "## My answer $e^{i\\pi} + 1 = 0$",
            f'<img src="x" onerror="{a("md-img-onerror")}">',
            f"<script>{js('md-script', hub)}</script>",
            f'<svg onload="{a("md-svg-onload")}"><circle r="4"/></svg>',
            f"[a markdown link](javascript:{js('md-md-link', hub).replace(' ', '%20')})",
            f'<a id="jslink" href="javascript:{a("md-a-href")}">an HTML link</a>',
            f'<iframe srcdoc="<script>{a("md-iframe")}</script>"></iframe>',
            f'<details open ontoggle="{a("md-details")}"><summary>x</summary></details>',
            f'<math><mtext><table><mglyph><style><img src=x onerror="{a("md-mxss")}">'
            "</style></mglyph></table></mtext></math>",
            f'<form action="javascript:{a("md-form")}"><button id="jsform">go</button></form>',
            f'<object data="data:text/html,<script>{a("md-object")}</script>"></object>',
        ]
    )


def hostile_outputs(hub: str = "") -> list:
    new = nbformat.v4.new_output
    return [
        new(
            "display_data",
            data={
                "text/html": (
                    f"<b>table</b><script>{js('out-html-script', hub)}</script>"
                    f'<img src=x onerror="{html.escape(js("out-html-img", hub))}">'
                ),
                "text/plain": "<table>",
            },
        ),
        new("display_data", data={"application/javascript": js("out-javascript", hub)}),
        new(
            "display_data",
            data={"text/markdown": f'<img src=x onerror="{html.escape(js("out-md", hub))}">'},
        ),
        new(
            "display_data",
            data={
                "image/svg+xml": f'<svg xmlns="http://www.w3.org/2000/svg" onload="{html.escape(js("out-svg", hub))}"/>'
            },
        ),
    ]


def hostile_code(hub: str = "") -> str:
    """The trainee's answer cell: a correct ``double`` that also displays hostile outputs."""
    outs = hostile_outputs(hub)
    return "\n".join(
        [
            "def double(x):",
            "    return 2 * x",
            "",
            "from IPython.display import display",
            *(
                f"display({dict(o['data'])!r}, raw=True)"
                for o in outs  # raw mime bundles, exactly as a library would send them
            ),
        ]
    )


def hostile_notebook(released: nbformat.NotebookNode, hub: str = "") -> nbformat.NotebookNode:
    """``released`` (the student version of hello) with a hostile answer and a hostile
    markdown cell the trainee added, outputs included (as they would be after running it)."""
    nb = nbformat.from_dict(released)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "double_answer":
            cell.source = hostile_code(hub)
            cell.outputs = hostile_outputs(hub)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(markdown_answer(hub)))
    return nb
