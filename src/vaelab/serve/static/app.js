// The latent-space explorer. Every section shows one card per chosen model, side by side; all
// numbers come from the REST API under /api (documented at /docs).
import { api, card, el, latestWins, toast } from "./lib.js";
import { Pad } from "./pad.js";
import { MapView, PALETTE, trainingPanel } from "./plots.js";
import { loadScoreReference, scoreCard, setupScorePanel } from "./score.js";

const $ = (id) => document.getElementById(id);
const SLIDER_DIMS = 8;
const S = {
  models: [], info: {}, active: [], ui: {}, maps: {}, base: {},
  drawing: null, examples: [], ends: { a: null, b: null }, nextEnd: "a",
};
const models = () => S.models.filter((m) => S.active.includes(m.id));
const url = (m, path) => `/api/models/${encodeURIComponent(m.id)}/${path}`;
// The class a conditional model reads the drawing as and decodes as (the Class menu of the drawing
// section); undefined for an unconditional model, so JSON bodies leave `label` out.
const classOf = (m) => (m.classes ? Math.min(Number($("class").value) || 0, m.classes.length - 1) : undefined);
// An image that has nothing to show yet stays hidden (CSS) inside a slot that draws an empty frame.
const slot = (img) => el("span", { class: "slot" }, img);

async function main() {
  S.models = await api("/api/models");
  S.active = S.models.map((m) => m.id);
  await Promise.all(S.models.map(async (m) => { S.info[m.id] = await api(`/api/models/${m.id}`); }));
  S.pad = new Pad($("pad"), latestWins(onDrawing));
  setupControls();
  await loadExamples();
  render();
}

// --- header and controls --------------------------------------------------------------------------
function chips() {
  $("model-chips").replaceChildren(...S.models.map((m) => el("button", {
    class: `chip${S.active.includes(m.id) ? " on" : ""}`, type: "button", title: m.path,
    onclick: () => {
      const on = S.active.includes(m.id);
      if (on && S.active.length === 1) return toast("Keep at least one model shown.");
      S.active = on ? S.active.filter((id) => id !== m.id) : S.models.map((x) => x.id).filter((id) => id === m.id || S.active.includes(id));
      render();
    },
  }, m.name)));
}

function setupControls() {
  const priors = [...new Set(S.models.flatMap((m) => m.priors))];
  $("prior").replaceChildren(...priors.map((p) => el("option", { value: p }, p.replace("_", " "))));
  $("prior").disabled = priors.length < 2;
  const classes = S.models.find((m) => m.classes)?.classes;
  for (const [id, first] of [["label", [el("option", { value: "" }, "any")]], ["class", []]]) {
    $(id).replaceChildren(...(classes
      ? [...first, ...classes.map((c, i) => el("option", { value: i }, c))]
      : [el("option", { value: "" }, "unconditional model")]));
    $(id).disabled = !classes;
  }
  $("class").addEventListener("change", render); // every view of a conditional model decodes as it
  const refresh = latestWins(refreshSamples);
  for (const id of ["temperature", "guidance"]) {
    $(id).addEventListener("input", () => {
      $(`${id}-out`).value = Number($(id).value).toFixed(2);
      refresh();
    });
  }
  // Guidance only for the models that take it (conditional, trained with label dropout).
  $("guidance").disabled = !S.models.some((m) => m.guidance);
  for (const id of ["n", "seed", "prior", "label"]) $(id).addEventListener("change", refresh);
  $("reseed").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 1e6); refresh(); });
  $("clear").addEventListener("click", () => { S.pad.clear(); S.drawing = null; render(); });
  $("upload").addEventListener("change", onUpload);
  setupScorePanel(() => models().map((m) => [m, S.ui[m.id]]), () => S.drawing);
  const interp = latestWins(refreshInterpolation);
  $("steps").addEventListener("input", () => { $("steps-out").value = $("steps").value; interp(); });
  $("mode").addEventListener("change", interp);
  $("drawing-a").addEventListener("click", () => setEnd("a", S.drawing, "your drawing"));
  $("drawing-b").addEventListener("click", () => setEnd("b", S.drawing, "your drawing"));
  $("from-drawing").addEventListener("click", () => slidersFromDrawing(true));
  $("from-zero").addEventListener("click", () => {
    for (const m of models()) setBase(m, new Array(m.latent_dim).fill(0));
  });
}

// --- building the cards ---------------------------------------------------------------------------
function render() {
  chips();
  const sections = { sample: [], recon: [], score: [], interp: [], slider: [], map: [], train: [] };
  for (const m of models()) {
    const ui = (S.ui[m.id] = { decode: latestWins((z) => decodeInto(m, z)) });
    ui.grid = el("div", { class: "grid" });
    sections.sample.push(card(m, ui.grid));
    ui.input = el("img", { alt: "input as the model reads it" });
    ui.recon = el("img", { alt: "reconstruction", dataset: { testid: "reconstruction" } });
    sections.recon.push(card(m, el("div", { class: "pair" },
      el("figure", {}, slot(ui.input), el("figcaption", {}, "input")),
      el("figure", {}, slot(ui.recon), el("figcaption", {}, "reconstruction"))),
    ui.reconNote = el("p", { class: "note" }, "Draw on the pad or upload an image.")));
    sections.score.push(card(m, ...scoreCard(ui)));
    ui.interp = el("div", { class: "row" });
    sections.interp.push(card(m, ui.interp));
    sections.slider.push(card(m, sliderPanel(m, ui)));
    ui.mapBox = el("div", {}, el("p", { class: "note" }, "Loading the map…"));
    sections.map.push(card(m, ui.mapBox));
    sections.train.push(card(m, ...trainingPanel(S.info[m.id])));
  }
  for (const [name, cards] of Object.entries(sections)) $(`${name}-cards`).replaceChildren(...cards);
  refreshSamples().catch((e) => toast(e.message));
  refreshInterpolation().catch((e) => toast(e.message));
  for (const m of models()) {
    setBase(m, S.base[m.id] || new Array(m.latent_dim).fill(0));
    loadMap(m).catch((e) => toast(e.message));
    loadScoreReference(m, S.ui[m.id]);
  }
  if (S.drawing) onDrawing(S.drawing);
}

// --- samples ------------------------------------------------------------------------------------------
async function refreshSamples() {
  const n = Number($("n").value);
  const body = {
    n, temperature: Number($("temperature").value), seed: Math.max(0, Math.floor(Number($("seed").value) || 0)),
    prior: $("prior").value || null,
  };
  await Promise.all(models().map(async (m) => {
    const label = $("label").value;
    const guidance = m.guidance ? Number($("guidance").value) : 1;
    const res = await api(url(m, "sample"), { method: "POST", body: { ...body, guidance, label: m.classes && label !== "" ? Number(label) : null } });
    const grid = S.ui[m.id].grid;
    grid.style.gridTemplateColumns = `repeat(${Math.min(8, n)}, 1fr)`;
    grid.replaceChildren(...res.images.map((src, i) => el("img", {
      src, alt: `sample ${i}`, title: "explore with the latent sliders", onclick: () => {
        setBase(m, res.latents[i]);
        $("sliders").scrollIntoView({ behavior: "smooth" });
      },
    })));
  }));
}

// --- drawing, upload, reconstruction ----------------------------------------------------------------------
async function onDrawing(image) {
  if (!image) return;
  S.drawing = image;
  await Promise.all(models().map(async (m) => {
    const res = await api(url(m, "reconstruct"), { method: "POST", body: { image, resize: true, label: classOf(m) } });
    showReconstruction(m, res);
  }));
}

function showReconstruction(m, res) {
  const ui = S.ui[m.id];
  ui.input.src = res.input;
  ui.recon.src = res.reconstruction;
  ui.reconNote.textContent = `posterior mean norm ${Math.hypot(...res.mean).toFixed(2)}, mean std ${(res.std.reduce((a, b) => a + b, 0) / res.std.length).toFixed(3)}`;
  setBase(m, res.mean);
  const view = S.maps[m.id];
  if (view) { view.marks.drawing = view.project(res.mean); view.draw(); }
}

async function onUpload(e) {
  const file = e.target.files[0];
  e.target.value = "";
  if (!file) return;
  const bitmap = await createImageBitmap(file).catch(() => null);
  if (bitmap) S.pad.show(bitmap);
  const invert = $("invert").checked;
  try {
    await Promise.all(models().map(async (m, i) => {
      const form = new FormData();
      form.append("file", file);
      const label = m.classes ? `&label=${classOf(m)}` : "";
      const res = await api(`${url(m, "reconstruct/upload")}?resize=true&invert=${invert}${label}`, { method: "POST", form });
      if (i === 0) S.drawing = res.input;
      showReconstruction(m, res);
    }));
  } catch (err) {
    toast(err.message);
  }
}

// --- interpolation -------------------------------------------------------------------------------------
async function loadExamples() {
  for (const m of S.models) {
    try {
      const ex = await api(`${url(m, "examples")}?n=32&seed=1`);
      S.examples = ex.images.map((src, i) => ({
        src, cls: ex.labels?.[i], label: ex.labels ? `test #${ex.indices[i]} (${ex.labels[i]})` : `test #${ex.indices[i]}`,
      }));
      break;
    } catch (err) { /* this model has no test set here: try the next one */ }
  }
  if (!S.examples.length) {
    $("examples").replaceChildren(el("p", { class: "note" }, "No test set available: use your drawing as A and B."));
    return;
  }
  $("examples").replaceChildren(...S.examples.map((ex) => el("img", {
    src: ex.src, alt: ex.label, title: ex.label,
    onclick: (ev) => { const end = ev.shiftKey ? "b" : S.nextEnd; setEnd(end, ex.src, ex.label, ex.cls); },
  })));
  const [a, b] = [S.examples[0], S.examples[1 % S.examples.length]];
  setEnd("a", a.src, a.label, a.cls, false);
  setEnd("b", b.src, b.label, b.cls, false);
}

// An end of the interpolation: an image and its class (undefined: the drawing, read as the Class menu's).
function setEnd(end, src, label, cls, refresh = true) {
  if (!src) return toast("Draw something first.");
  S.ends[end] = { src, cls };
  S.nextEnd = end === "a" ? "b" : "a";
  $(`end-${end}`).src = src;
  $(`end-${end}`).title = label;
  for (const img of $("examples").querySelectorAll("img")) {
    img.classList.toggle("a", img.src === S.ends.a?.src);
    img.classList.toggle("b", img.src === S.ends.b?.src);
  }
  if (refresh) refreshInterpolation().catch((e) => toast(e.message));
}

async function refreshInterpolation() {
  if (!S.ends.a || !S.ends.b) return;
  const end = (m, { src, cls }) => ({ image: src, resize: true, label: m.classes ? cls ?? classOf(m) : undefined });
  await Promise.all(models().map(async (m) => {
    const body = {
      a: end(m, S.ends.a), b: end(m, S.ends.b), steps: Number($("steps").value), mode: $("mode").value, label: classOf(m),
    };
    const res = await api(url(m, "interpolate"), { method: "POST", body });
    S.ui[m.id].interp.replaceChildren(...res.images.map((src) => el("img", { src, alt: "" })));
  }));
}

// --- latent sliders -------------------------------------------------------------------------------------
function sliderPanel(m, ui) {
  ui.live = el("img", { alt: "decoded latent", dataset: { testid: "slider-image" } });
  const dims = S.info[m.id].latent_dims.slice(0, SLIDER_DIMS);
  ui.sliders = dims.map(({ dim, kl }) => {
    const out = el("output", {}, "0.00");
    const input = el("input", {
      type: "range", min: -3, max: 3, step: 0.01, value: 0, dataset: { dim },
      oninput: () => {
        S.base[m.id][dim] = Number(input.value);
        out.value = Number(input.value).toFixed(2);
        ui.decode(S.base[m.id]);
      },
    });
    return { dim, input, out, row: el("div", { class: "dim", title: `KL ${kl.toFixed(3)} nats` }, `z${dim} · KL ${kl.toFixed(2)}`, input, out) };
  });
  return el("div", { class: "sliders" }, slot(ui.live), el("div", { class: "dims" }, ui.sliders.map((s) => s.row)));
}

function setBase(m, z) {
  S.base[m.id] = [...z];
  const ui = S.ui[m.id];
  if (!ui) return;
  for (const s of ui.sliders) {
    s.input.value = z[s.dim];
    s.out.value = Number(z[s.dim]).toFixed(2);
  }
  ui.decode(S.base[m.id]);
}

async function decodeInto(m, z) {
  const body = { z: [z.map((v) => Math.max(-1000, Math.min(1000, v)))], label: classOf(m) };
  const res = await api(url(m, "decode"), { method: "POST", body });
  S.ui[m.id].live.src = res.images[0];
}

async function slidersFromDrawing(explicit) {
  if (!S.drawing) return explicit && toast("Draw something first.");
  await Promise.all(models().map(async (m) => {
    const res = await api(url(m, "encode"), { method: "POST", body: { image: S.drawing, resize: true, label: classOf(m) } });
    setBase(m, res.mean);
  }));
}

// --- latent map -----------------------------------------------------------------------------------------
async function loadMap(m) {
  const ui = S.ui[m.id];
  let map;
  try {
    map = await api(url(m, "latent-map"));
  } catch (err) {
    ui.mapBox.replaceChildren(el("p", { class: "note" }, `No map: ${err.message}`));
    return;
  }
  const canvas = el("canvas", { width: 560, height: 560, "aria-label": "latent map" });
  const picked = el("img", { alt: "decoded map point" });
  const view = new MapView(canvas, map, async (x, y) => {
    const body = { z: [view.latent(x, y)], label: classOf(m) };
    const res = await api(url(m, "decode"), { method: "POST", body }).catch((e) => toast(e.message));
    if (res) picked.src = res.images[0];
  });
  S.maps[m.id] = view;
  const labels = [...new Set(map.labels || [])].sort((a, b) => a - b);
  const ev = map.explained_variance.map((v) => `${(100 * v).toFixed(0)}%`).join(" + ");
  ui.mapBox.replaceChildren(el("div", { class: "mapbox" }, canvas, el("div", {}, slot(picked),
    el("p", { class: "note" }, `${map.x.length} test images; PC1 + PC2 explain ${ev} of the variance.`))),
  el("div", { class: "legend" }, labels.map((l) => el("span", {}, el("i", { style: `background:${PALETTE[l % PALETTE.length]}` }), String(l)))));
  view.pick(0, 0); // the centre of the test encodings: a typical image
}

main().catch((err) => toast(`Could not start: ${err.message}`));
