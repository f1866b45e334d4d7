// Wires the form to the API: loads methods, samples, presets and label sets, submits one job per
// method (POST /v1/jobs) and follows each job's events into a RunView.
import { ApiError, followJob, getJSON, loadKey, postJSON, saveKey } from "./api.js";
import { RunView } from "./run_view.js";

const $ = (selector) => document.querySelector(selector);
const state = { image: null, methods: [], presets: {} };

function showError(error) {
  const box = $("#error");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  const field = error.field ? ` (field: ${error.field})` : "";
  box.textContent = error instanceof ApiError
    ? `${error.status ? `${error.status} ` : ""}${error.code}: ${error.message}${field}`
    : `Error: ${error.message}`;
  box.hidden = false;
}

function status(text) { $("#status").textContent = text; }

// ---- image --------------------------------------------------------------------------------

async function useImage(blob, name) {
  const buffer = new Uint8Array(await blob.arrayBuffer());
  let binary = "";
  for (let i = 0; i < buffer.length; i += 0x8000) binary += String.fromCharCode(...buffer.subarray(i, i + 0x8000));
  state.image = btoa(binary);
  const preview = $("#image-preview");
  preview.src = URL.createObjectURL(blob);
  preview.alt = `Chosen image: ${name}`;
  preview.hidden = false;
  $("#image-chosen").textContent = `Chosen: ${name} (${buffer.length} bytes)`;
}

function setupImage() {
  $("#image-file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) { markSample(null); useImage(file, file.name); }
  });
  const zone = $("#drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) { markSample(null); useImage(file, file.name); }
  });
}

function markSample(id) {
  for (const button of document.querySelectorAll("#samples button")) {
    button.setAttribute("aria-pressed", String(button.dataset.id === id));
  }
}

async function loadSamples() {
  const { samples } = await getJSON("/v1/samples");
  const box = $("#samples");
  for (const s of samples) {
    const text = `${s.id === "demo" ? "demo, " : ""}${s.domain}: a ${s.truth} (zeroshot: ${s.zeroshot}, rlcf: ${s.rlcf})`;
    const button = document.createElement("button");
    Object.assign(button, { type: "button", title: text, className: "sample" });
    button.dataset.id = s.id;
    button.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-label", text);
    const img = Object.assign(document.createElement("img"), { src: s.url, alt: "", width: 64, height: 64 });
    const caption = Object.assign(document.createElement("span"), { textContent: `${s.domain}: ${s.truth}` });
    button.append(img, caption);
    button.addEventListener("click", async () => {
      markSample(s.id);
      const blob = await (await fetch(s.url)).blob();
      await useImage(blob, `${s.id}.png (${s.domain}, a ${s.truth})`);
    });
    box.append(button);
  }
}

// ---- labels -------------------------------------------------------------------------------

const labelSource = () => document.querySelector("input[name=label-source]:checked").value;

async function preset(name) {
  state.presets[name] ??= (await (await fetch(`/static/presets/${name}.json`)).json()).labels;
  return state.presets[name];
}

function textLabels() {
  const text = $("#labels-text").value.trim();
  if (!text) return [];
  return (text.includes("\n") ? text.split("\n") : text.split(",")).map((s) => s.trim()).filter(Boolean);
}

async function labelsPart() {
  const source = labelSource();
  if (source === "label_set") return { label_set: $("#label-set").value || null };
  const labels = source === "preset" ? await preset($("#preset").value) : textLabels();
  return labels.length ? { labels } : {};  // none: the API says what is missing
}

async function updateLabelCount() {
  const source = labelSource();
  for (const div of document.querySelectorAll("[data-source]")) div.hidden = div.dataset.source !== source;
  const count = source === "preset" ? (await preset($("#preset").value)).length
    : source === "text" ? textLabels().length : null;
  $("#labels-count").textContent = count === null ? "" : `${count} labels`;
}

async function loadLabelSets() {
  const select = $("#label-set");
  try {
    const { label_sets: sets } = await getJSON("/v1/label-sets");
    select.replaceChildren(...sets.map((s) => new Option(`${s.name} (${s.n_labels} labels, ${s.n_exemplars} exemplars)`, s.name)));
    if (!sets.length) select.append(new Option("(no label sets for this key)", ""));
  } catch (error) {
    select.replaceChildren(new Option(`(could not list: ${error.message})`, ""));
  }
}

// ---- methods ------------------------------------------------------------------------------

function optionInput(method, option) {
  const id = `opt-${method}-${option.name}`;
  const wrap = document.createElement("div");
  const label = Object.assign(document.createElement("label"), { htmlFor: id, textContent: `${option.name} (${option.type})` });
  const choices = option.type.startsWith("one of") ? [...option.type.matchAll(/'([^']*)'/g)].map((m) => m[1]) : null;
  let input;
  if (choices) {
    input = document.createElement("select");
    input.append(...choices.map((c) => new Option(c, c, false, c === option.default)));
  } else {
    input = document.createElement("input");
    input.type = option.type === "int" || option.type === "float" ? "number" : "text";
    if (option.type === "float") input.step = "any";
    input.value = option.default ?? "";
    input.placeholder = option.default === null ? "default" : String(option.default);
  }
  Object.assign(input, { id, name: option.name });
  input.dataset.type = option.type;
  const doc = Object.assign(document.createElement("p"), { className: "hint", id: `${id}-doc`,
    textContent: `${option.doc} Default: ${option.default === null ? "none" : option.default}.` });
  input.setAttribute("aria-describedby", doc.id);
  wrap.append(label, input, doc);
  return wrap;
}

function showOptions() {
  const spec = state.methods.find((m) => m.name === $("#method").value);
  const box = $("#options");
  box.replaceChildren(box.querySelector("legend"));
  if (!spec) return;
  $("#method-doc").textContent = spec.description + (spec.served ? "" : " No live worker serves it now.");
  if (!spec.options.length) box.append(Object.assign(document.createElement("p"), { textContent: "No options." }));
  for (const option of spec.options) box.append(optionInput(spec.name, option));
}

function optionValues() {
  const options = {};
  for (const input of document.querySelectorAll("#options input, #options select")) {
    const raw = input.value.trim();
    if (raw === "") continue;
    const numeric = input.dataset.type === "int" || input.dataset.type.startsWith("float");
    options[input.name] = numeric && !Number.isNaN(Number(raw)) ? Number(raw) : raw;
  }
  return options;
}

let methodsGeneration = 0;

/** (Re)load the methods, e.g. after the key changed; only the latest load fills the form. */
async function loadMethods() {
  const generation = ++methodsGeneration;
  document.body.dataset.ready = "false";
  const { methods } = await getJSON("/v1/methods");
  if (generation !== methodsGeneration) return;
  state.methods = methods;
  const select = $("#method");
  select.replaceChildren(...methods.map((m) => new Option(m.served ? m.name : `${m.name} (not served)`, m.name)));
  select.value = methods.some((m) => m.name === "rlcf") ? "rlcf" : methods[0].name;
  const compare = $("#compare-methods");
  compare.replaceChildren(compare.querySelector("legend"));
  for (const m of methods) {
    const label = document.createElement("label");
    label.className = "inline";
    const box = Object.assign(document.createElement("input"), { type: "checkbox", value: m.name,
      checked: m.served && !m.needs_exemplars });
    label.append(box, ` ${m.name}${m.served ? "" : " (not served)"}`);
    compare.append(label);
  }
  showOptions();
  document.body.dataset.ready = "true";
}

// ---- running ------------------------------------------------------------------------------

async function runOne(container, method, common, options) {
  const view = new RunView(container, method);
  try {
    const job = await postJSON("/v1/jobs", { ...common, method, options });
    view.setState("queued");
    await followJob(job.events_url, (event) => view.handle(event));
  } catch (error) {
    if (error instanceof ApiError) view.showError(error);
    else view.showError({ code: "browser_error", message: error.message });
    throw error;
  }
}

async function run(event) {
  event.preventDefault();
  showError(null);
  saveKey($("#api-key").value.trim(), $("#remember-key").checked);
  const mode = document.querySelector("input[name=mode]:checked").value;
  const common = { images: state.image ? [state.image] : [], ...(await labelsPart()),
    top_k: Number($("#top-k").value), seed: Number($("#seed").value) };
  const methods = mode === "single" ? [$("#method").value]
    : [...document.querySelectorAll("#compare-methods input:checked")].map((b) => b.value);
  const results = $("#results");
  results.replaceChildren();
  results.classList.toggle("compare", mode === "compare");
  $("#run").disabled = true;
  status(`Running ${methods.join(", ")}...`);
  const outcomes = await Promise.allSettled(methods.map((m) => runOne(results, m, common,
    mode === "single" ? optionValues() : {})));
  const failed = outcomes.filter((o) => o.status === "rejected");
  if (failed.length) showError(failed[0].reason);
  status(failed.length ? `${failed.length} of ${methods.length} failed.` : "Done.");
  $("#run").disabled = false;
}

function setupModes() {
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => {
      for (const div of document.querySelectorAll("[data-mode]")) div.hidden = div.dataset.mode !== radio.value;
    });
  }
  for (const radio of document.querySelectorAll("input[name=label-source]")) {
    radio.addEventListener("change", () => { updateLabelCount(); if (radio.value === "label_set") loadLabelSets(); });
  }
}

async function init() {
  $("#api-key").value = loadKey();
  $("#remember-key").checked = Boolean(localStorage.getItem("tta-api-key"));
  $("#api-key").addEventListener("change", () => {
    saveKey($("#api-key").value.trim(), $("#remember-key").checked);
    showError(null);
    loadMethods().catch(showError);
  });
  $("#method").addEventListener("change", showOptions);
  $("#preset").addEventListener("change", updateLabelCount);
  $("#labels-text").addEventListener("input", updateLabelCount);
  $("#refresh-label-sets").addEventListener("click", loadLabelSets);
  $("#run-form").addEventListener("submit", run);
  setupImage();
  setupModes();
  updateLabelCount();
  await Promise.all([loadSamples().catch(showError), loadMethods().catch(showError)]);
}

init();
