// The score panel: is an image like each model's training data? Its OOD score (POST .../score), where it
// falls among the in-distribution reference's scores, and in or out when the model is calibrated.
import { api, el, toast } from "./lib.js";
import { scoreChart } from "./plots.js";

const $ = (id) => document.getElementById(id);
const url = (m, path) => `/api/models/${encodeURIComponent(m.id)}/${path}`;
const scoreQuery = () => ($("score-name").value ? `score=${$("score-name").value}` : "");

/** A model card's contents: the image as scored, the verdict line, the reference histogram. */
export function scoreCard(ui) {
  ui.scoreInput = el("img", { alt: "image as the model scores it" });
  ui.scoreText = el("p", { class: "note", dataset: { testid: "score-text" } }, "Drop or choose an image to score.");
  ui.scoreChart = el("div", {}, el("p", { class: "note" }, "Loading the reference…"));
  return [el("div", { class: "scorebox" }, el("span", { class: "slot" }, ui.scoreInput), ui.scoreText), ui.scoreChart];
}

/** Draw the model's reference histogram for the chosen score, before any image is scored. */
export async function loadScoreReference(m, ui) {
  try {
    const res = await api(`${url(m, "score/reference")}?${scoreQuery()}`);
    ui.scoreChart.replaceChildren(res.reference
      ? scoreChart(res, null)
      : el("p", { class: "note" }, "No reference here (no test set, no calibration)."));
    if (res.note) ui.scoreText.textContent = res.note;
  } catch (err) {
    ui.scoreText.textContent = err.message;
  }
}

function showScore(ui, res) {
  ui.scoreInput.src = res.input;
  const where = res.percentile == null ? "" : `; ${res.percentile.toFixed(1)}% of the reference score lower`;
  const verdict = res.verdict
    ? ` → ${res.verdict.toUpperCase()} of distribution (threshold ${res.threshold.toPrecision(4)} at ${100 * res.fpr}% FPR)`
    : " (not calibrated: no in/out)";
  ui.scoreText.textContent = `${res.score} = ${res.value.toPrecision(5)}${where}${verdict}${res.note ? `. ${res.note}` : ""}`;
  if (res.reference) ui.scoreChart.replaceChildren(scoreChart(res, res.value));
}

/** Score with every shown model: `request(m)` gives the API answer for model m. */
async function scoreAll(shown, request) {
  await Promise.all(shown().map(async ([m, ui]) => {
    try {
      showScore(ui, await request(m));
    } catch (err) {
      ui.scoreText.textContent = err.message;
    }
  }));
}

/**
 * Wire the panel: the file chooser, drag and drop onto the section, "Score the drawing", the score menu.
 * `shown()` gives [model, its card's ui] of every shown model; `drawing()` the pad's image or null.
 */
export function setupScorePanel(shown, drawing) {
  const scoreFile = (file) => scoreAll(shown, (m) => {
    const form = new FormData();
    form.append("file", file);
    const invert = $("score-invert").checked;
    return api(`${url(m, "score/upload")}?resize=true&invert=${invert}&${scoreQuery()}`, { method: "POST", form });
  });
  $("score-upload").addEventListener("change", (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (file) scoreFile(file);
  });
  $("score-drawing").addEventListener("click", () => {
    const image = drawing();
    if (!image) return toast("Draw something first.");
    const score = $("score-name").value || null;
    scoreAll(shown, (m) => api(url(m, "score"), { method: "POST", body: { image, resize: true, score } }));
  });
  $("score-name").addEventListener("change", () => {
    for (const [m, ui] of shown()) loadScoreReference(m, ui);
  });
  const zone = $("score");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dropping"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dropping"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dropping");
    const file = e.dataTransfer.files[0];
    if (file) scoreFile(file);
  });
}
