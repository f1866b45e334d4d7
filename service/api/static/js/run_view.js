// One run's card: event log, zero-shot bars, the per-step chart, the moving top-k, the answer.

const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

const fmt = (x, digits = 4) => (typeof x === "number" ? Number(x.toFixed(digits)).toString() : String(x));

/** Horizontal bars for [{label, score}] (scores are probabilities, or P(True) for mllm). */
export function bars(items, caption) {
  const list = el("ol", { class: "bars", "aria-label": caption });
  for (const { label, score } of items) {
    const width = `${Math.max(0, Math.min(1, score)) * 100}%`;
    const bar = el("span", { class: "bar" });
    bar.style.width = width;
    list.append(el("li", {}, el("span", { class: "bar-label" }, label),
      el("span", { class: "bar-track" }, bar), el("span", { class: "bar-value" }, fmt(score))));
  }
  return list;
}

/** A line chart of one metric by step, drawn as points arrive. */
class StepChart {
  constructor(metric, totalSteps) {
    this.metric = metric;
    this.total = Math.max(1, totalSteps);
    this.points = [];
    this.node = svg("svg", { viewBox: "0 0 320 140", class: "chart", role: "img" });
    this.figure = el("figure", { class: "chart-box" }, this.node,
      el("figcaption", {}, `${metric} by step`));
  }

  add(step, value) {
    this.points.push([step, value]);
    const values = this.points.map(([, v]) => v);
    let low = Math.min(...values), high = Math.max(...values);
    // Pad by the spread of the values; only a flat line (one step) is padded around its value.
    const pad = high - low > 1e-9 ? (high - low) * 0.1 : Math.max(Math.abs(high) * 0.05, 1e-3);
    low -= pad; high += pad;
    const x = (s) => 56 + (254 * (s - 0.5)) / this.total;  // step s in the middle of its slot
    const y = (v) => 120 - (100 * (v - low)) / (high - low);
    const nodes = [
      svg("line", { x1: 56, y1: 120, x2: 310, y2: 120, class: "axis" }),
      svg("line", { x1: 56, y1: 20, x2: 56, y2: 120, class: "axis" }),
      Object.assign(svg("text", { x: 52, y: 24, class: "tick", "text-anchor": "end" }), { textContent: fmt(high) }),
      Object.assign(svg("text", { x: 52, y: 120, class: "tick", "text-anchor": "end" }), { textContent: fmt(low) }),
      Object.assign(svg("text", { x: 56, y: 136, class: "tick" }), { textContent: this.total > 1 ? "step 1" : "" }),
      Object.assign(svg("text", { x: 310, y: 136, class: "tick", "text-anchor": "end" }), { textContent: `step ${this.total}` }),
      svg("polyline", { points: this.points.map(([s, v]) => `${x(s)},${y(v)}`).join(" "), class: "line" }),
    ];
    for (const [s, v] of this.points) {
      const dot = svg("circle", { cx: x(s), cy: y(v), r: 4, class: "step-point", "data-step": s });
      dot.append(Object.assign(svg("title"), { textContent: `step ${s}: ${this.metric} ${fmt(v)}` }));
      nodes.push(dot);
    }
    this.node.replaceChildren(...nodes);
    this.node.setAttribute("aria-label", `${this.metric} by step: ` +
      this.points.map(([s, v]) => `step ${s} ${fmt(v)}`).join(", "));
  }
}

export class RunView {
  constructor(container, method) {
    this.method = method;
    this.started = performance.now();
    this.state = el("span", { class: "run-state" }, "submitting");
    this.log = el("ol", { class: "event-log", "aria-label": "Events" });
    this.body = el("div", { class: "run-body" });
    this.card = el("article", { class: "run", "data-method": method, "aria-label": `Run of ${method}` },
      el("h2", {}, method, " ", this.state), this.body,
      el("details", {}, el("summary", {}, "Events"), this.log));
    container.append(this.card);
    this.chart = null;
  }

  setState(text) { this.state.textContent = text; }

  section(part, title) {
    let node = this.body.querySelector(`[data-part="${part}"]`);
    if (!node) {
      node = el("section", { "data-part": part }, el("h3", {}, title));
      this.body.append(node);
    }
    return node;
  }

  replaceContent(part, title, ...children) {
    const node = this.section(part, title);
    node.firstChild.textContent = title;
    node.replaceChildren(node.firstChild, ...children);
    return node;
  }

  handle({ event, data }) {
    const ms = Math.round(performance.now() - this.started);
    const what = event === "progress" ? `progress ${data.step}/${data.total_steps}` : event;
    this.log.append(el("li", {}, `${ms} ms: ${what}`));
    if (event === "queued" || event === "started") this.setState(event);
    else if (event === "zeroshot") this.onZeroshot(data);
    else if (event === "progress") this.onProgress(data);
    else if (event === "result") this.onResult(data);
    else if (event === "error") this.showError(data);
  }

  onZeroshot(data) {
    this.setState("zero-shot guess in");
    this.replaceContent("zeroshot", "Zero-shot top-k", bars(data.top_k, "Zero-shot probabilities"));
  }

  onProgress(data) {
    this.setState(`step ${data.step} of ${data.total_steps}`);
    if ("candidate" in data) {  // mllm: one scored candidate per event
      const node = this.section("candidates", "MLLM P(True) per candidate");
      let list = node.querySelector("ol");
      if (!list) { list = el("ol", { class: "bars", "aria-label": "P(True) per candidate" }); node.append(list); }
      list.append(...bars([{ label: `${data.candidate} (${data.metric})`, score: data.p_true }], "").children);
      this.section("steps", "Steps").replaceChildren(el("h3", {}, "Steps"),
        el("p", {}, `${data.step} of ${data.total_steps} candidates scored`));
      return;
    }
    if (data.metric === "escalate") {  // auto calls its next tier: say why; its steps get a new chart
      const node = this.section("tiers", "Tiers called");
      let list = node.querySelector("ol");
      if (!list) { list = el("ol", { class: "tiers", "aria-label": "tiers called" }); node.append(list); }
      list.append(el("li", {}, `${data.from} was unsure (${data.criterion} ${fmt(data.confidence)} under ` +
        `${fmt(data.threshold)}): calling ${data.tier}`));
      this.chart = null;
      return;
    }
    if (!this.chart) {
      this.chart = new StepChart(data.tier ? `${data.tier}: ${data.metric}` : data.metric, data.total_steps);
      this.replaceContent("steps", "Per-step metric", this.chart.figure);
    }
    this.chart.add(data.step, data.value);
    this.replaceContent("moving", `Top-k after step ${data.step}`, bars(data.top_k, `Top-k after step ${data.step}`));
  }

  onResult(data) {
    this.setState(data.final ? "done" : `image ${data.image} done`);
    const m = data.metrics ?? {};
    const was = data.zeroshot_top_k?.[0]?.label;
    const changed = data.changed
      ? el("p", { class: "changed yes" }, `Changed: zero-shot said ${was}`)
      : el("p", { class: "changed no" }, "Unchanged from zero-shot");
    const facts = el("dl", { class: "metrics" });
    const shown = { queue_ms: "queue wait (ms)", compute_ms: "compute (ms)", steps: "steps" };
    for (const [key, name] of Object.entries(shown)) {
      if (key in m) facts.append(el("dt", {}, name), el("dd", {}, fmt(m[key], 1)));
    }
    for (const [key, value] of Object.entries(m)) {
      if (!(key in shown) && key !== "candidates" && (typeof value !== "object" || value === null)) {
        facts.append(el("dt", {}, key), el("dd", {}, fmt(value)));
      }
    }
    const children = [el("p", { class: "answer" }, "Answer: ", el("strong", {}, data.label), ` (${fmt(data.score)})`),
      changed, facts, bars(data.top_k, "Final top-k")];
    if (Array.isArray(m.candidates)) children.push(this.candidateTable(m.candidates));
    this.replaceContent("final", "Final answer", ...children);
  }

  candidateTable(candidates) {
    const table = el("table", { class: "candidates" },
      el("caption", {}, "Candidates the MLLM checked. The API does not return which exemplar images it was shown."),
      el("tr", {}, el("th", { scope: "col" }, "label"), el("th", { scope: "col" }, "CLIP probability"),
        el("th", { scope: "col" }, "P(True)")));
    for (const c of candidates) {
      table.append(el("tr", {}, el("td", {}, c.label), el("td", {}, fmt(c.clip_prob)),
        el("td", {}, c.p_true === null ? "not scored" : fmt(c.p_true))));
    }
    return table;
  }

  showError(error) {
    this.setState("failed");
    const field = error.field ? ` (field: ${error.field})` : "";
    this.replaceContent("error", "Error", el("p", { class: "error", role: "alert" },
      `${error.code}: ${error.message}${field}`));
  }
}
