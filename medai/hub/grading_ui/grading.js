// The grading page of the medai-grading service. Plain DOM, no libraries, loaded as a file (the
// page's content security policy allows no inline script). Everything shown that comes from a
// submission (messages, names) is set as text, never as HTML.
"use strict";

(function () {
  const api = document.querySelector('meta[name="medai-api"]').content;
  const xsrf = document.querySelector('meta[name="medai-xsrf"]').content;
  const POLL_MS = 700;
  let polling = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  function showMessage(text, kind) {
    const box = document.getElementById("message");
    box.textContent = text;
    box.className = kind || "error";
    box.hidden = !text;
  }

  async function call(method, path, body) {
    // JupyterHub accepts the sign-in cookie on a script's request (GET too) only with the token
    const headers = { Accept: "application/json", "X-XSRFToken": xsrf };
    const opts = { method, headers, credentials: "same-origin" };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body || {});
    }
    let resp;
    try {
      resp = await fetch(api + path, opts);
    } catch (err) {
      throw new Error("the grading service cannot be reached (" + err.message + ")");
    }
    let data = null;
    try {
      data = await resp.json();
    } catch (err) {
      data = null;
    }
    if (!resp.ok) {
      const why = data && data.error ? data.error : resp.status + " " + resp.statusText;
      throw new Error(why);
    }
    return data;
  }

  // ------------------------------------------------------------------ labs

  function labRow(lab) {
    const select = el("select", { "aria-label": "student of " + lab.id, class: "student" });
    for (const s of lab.received) select.append(el("option", { value: s, text: s }));
    const force = el("input", { type: "checkbox", class: "force" });
    const busy = lab.run && lab.run.active;
    const gradeLab = el("button", {
      class: "grade-lab",
      text: "Grade lab",
      on: { click: () => startRun(lab.id, null, force.checked) },
    });
    const gradeOne = el("button", {
      class: "grade-one",
      text: "Grade one student",
      on: { click: () => startRun(lab.id, select.value, force.checked) },
    });
    if (!lab.received.length) gradeOne.disabled = true;
    const results = el("button", {
      class: "show-results",
      text: "Results",
      on: { click: () => showResults(lab.id) },
    });
    return el(
      "tr",
      { "data-lab": lab.id },
      el("td", {}, el("b", { text: lab.title }), el("br"), el("code", { text: lab.id })),
      el("td", { class: "received", text: String(lab.received.length) }),
      el("td", { class: "collected", text: String(lab.collected) }),
      el("td", { class: "graded", text: String(lab.graded) + (busy ? " (grading…)" : "") }),
      el(
        "td",
        { class: "actions" },
        gradeLab,
        " ",
        select,
        gradeOne,
        " ",
        el("label", {}, force, " regrade"),
        " ",
        results,
      ),
    );
  }

  async function loadLabs() {
    const data = await call("GET", "labs");
    const body = document.querySelector("#labs tbody");
    body.replaceChildren(...data.labs.map(labRow));
    if (!data.labs.length) body.append(el("tr", {}, el("td", { colspan: "5", text: "No labs." })));
    return data.labs;
  }

  // ------------------------------------------------------------------ runs

  function describe(run) {
    const who = run.student ? " for " + run.student : "";
    switch (run.state) {
      case "collecting":
        return "Collecting submissions of " + run.lab + who + "…";
      case "reference":
        return "Running the reference solution of " + run.lab + "…";
      case "grading": {
        const now = run.current.length ? "; now: " + run.current.join(", ") : "";
        return "Grading " + run.lab + who + ": " + run.done + " of " + run.total + " done" + now;
      }
      case "done": {
        const secs = run.finished ? " in " + (run.finished - run.created).toFixed(1) + " s" : "";
        const kept = run.skipped.length ? "; " + run.skipped.length + " unchanged, kept" : "";
        return "Done: " + run.done + " of " + run.total + " graded" + secs + kept + ".";
      }
      default:
        return "Grading " + run.lab + who + " failed.";
    }
  }

  function resultRow(r) {
    const messages = el("td", { class: "messages" });
    for (const m of r.messages) messages.append(el("div", { text: m }));
    const score = r.late_penalty ? r.score + " (late −" + r.late_penalty + ")" : String(r.score);
    return el(
      "tr",
      { "data-student": r.student },
      el("td", { class: "student", text: r.student }),
      el("td", { class: "score", text: score }),
      el("td", { class: "max", text: String(r.max) }),
      el("td", { class: "status", text: r.status + (r.tampered ? " (tampered)" : "") }),
      el("td", { class: "now", text: r.graded_now ? "graded" : "unchanged" }),
      messages,
    );
  }

  function showTable(rows) {
    const table = document.getElementById("results");
    table.querySelector("tbody").replaceChildren(...rows.map(resultRow));
    table.hidden = false;
  }

  function render(run) {
    document.getElementById("run").hidden = false;
    document.getElementById("run-title").textContent =
      "Run " + run.id + " · " + run.lab + (run.student ? " · " + run.student : "") +
      (run.requested_by ? " · started by " + run.requested_by : "");
    const state = document.getElementById("run-state");
    state.textContent = describe(run);
    state.dataset.state = run.state;
    const bar = document.getElementById("run-progress");
    bar.hidden = false;
    bar.max = Math.max(run.total, 1);
    bar.value = run.state === "done" ? bar.max : run.done;
    document
      .getElementById("run-events")
      .replaceChildren(...run.events.map((e) => el("li", { text: e })));
    const err = document.getElementById("run-error");
    err.textContent = run.error || "";
    err.hidden = !run.error;
    document.getElementById("collect-log").textContent = run.collect_log || "";
    if (run.state === "done") showTable(run.results);
    else document.getElementById("results").hidden = true;
  }

  function follow(run) {
    if (polling) clearTimeout(polling);
    render(run);
    if (!run.active) {
      loadLabs().catch((e) => showMessage("Error: " + e.message));
      return;
    }
    polling = setTimeout(async () => {
      try {
        follow((await call("GET", "runs/" + encodeURIComponent(run.id))).run);
      } catch (e) {
        showMessage("Error while following run " + run.id + ": " + e.message);
      }
    }, POLL_MS);
  }

  async function startRun(lab, student, force) {
    showMessage("");
    try {
      const data = await call("POST", "labs/" + encodeURIComponent(lab) + "/grade", {
        student: student,
        force: force,
      });
      if (!data.started) {
        showMessage(
          "A grading run of " + lab + " is already running (started by " +
            (data.run.requested_by || "someone") + "); showing it.",
          "notice",
        );
      }
      follow(data.run);
    } catch (e) {
      showMessage("Error: " + e.message);
    }
  }

  async function showResults(lab) {
    showMessage("");
    try {
      const data = await call("GET", "labs/" + encodeURIComponent(lab) + "/results");
      document.getElementById("run").hidden = false;
      document.getElementById("run-title").textContent = "Stored results · " + lab;
      const state = document.getElementById("run-state");
      state.textContent = data.results.length + " graded submission(s).";
      state.dataset.state = "stored";
      document.getElementById("run-error").hidden = true;
      document.getElementById("run-progress").hidden = true;
      document.getElementById("run-events").replaceChildren();
      document.getElementById("collect-log").textContent = "";
      showTable(data.results);
    } catch (e) {
      showMessage("Error: " + e.message);
    }
  }

  async function init() {
    try {
      const labs = await loadLabs();
      const running = labs.find((l) => l.run && l.run.active);
      if (running) follow(running.run);
    } catch (e) {
      showMessage("Error: " + e.message);
    }
  }

  init();
})();
