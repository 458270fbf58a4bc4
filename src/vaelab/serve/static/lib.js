// Small helpers shared by the page: API calls, DOM building, latest-wins live requests, the toast.

/** Call the REST API; resolves to the JSON answer, rejects with the server's `detail` message. */
export async function api(path, { method = "GET", body, form } = {}) {
  const init = { method, headers: {} };
  if (form) {
    init.body = form;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  }
  const res = await fetch(path, init);
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const d = data.detail;
    const msg = Array.isArray(d) ? d.map((e) => `${e.loc.slice(1).join(".")}: ${e.msg}`).join("; ") : d;
    throw new Error(msg || `${res.status} ${res.statusText}`);
  }
  return data;
}

/** document.createElement with attributes/properties and children in one call. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c != null) node.append(c);
  return node;
}

/**
 * Wrap an async function so that at most one call runs at a time and, while it runs, only the
 * newest arguments wait: a slider dragged fast sends a request, then the latest value, never a queue.
 */
export function latestWins(fn) {
  let running = false;
  let pending = null;
  return function call(...args) {
    pending = args;
    if (running) return;
    running = true;
    (async () => {
      while (pending) {
        const next = pending;
        pending = null;
        try {
          await fn(...next);
        } catch (err) {
          toast(err.message);
        }
      }
      running = false;
    })();
  };
}

let toastTimer = null;
/** Show a short message at the bottom of the page (errors from the API land here). */
export function toast(message) {
  const t = document.getElementById("toast");
  t.textContent = message;
  t.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove("show"), 4000);
}

/** A model's card inside a section: a titled box; `body` nodes go under the title. */
export function card(model, ...body) {
  const facts = [
    model.image_shape.slice(1).join("×"),
    `z${model.latent_dim}`,
    model.stochastic_layers > 1 && `${model.stochastic_layers} latent layers`,
    model.classes && `${model.classes.length} classes`,
  ].filter(Boolean).join(" · ");
  return el("div", { class: "card", dataset: { model: model.id } }, el("h3", {}, model.name, el("small", {}, facts)), ...body);
}

/** Render a nested config object as indented YAML-like text (read-only display). */
export function yaml(value, indent = 0) {
  const pad = "  ".repeat(indent);
  if (Array.isArray(value) && value.every((v) => typeof v !== "object" || v === null)) {
    return `[${value.join(", ")}]`;
  }
  if (value && typeof value === "object") {
    return Object.entries(value).map(([k, v]) => {
      const inner = v && typeof v === "object" && !Array.isArray(v) ? `\n${yaml(v, indent + 1)}` : ` ${yaml(v)}`;
      return `${pad}${k}:${inner}`;
    }).join("\n");
  }
  return value === null ? "null" : String(value);
}
