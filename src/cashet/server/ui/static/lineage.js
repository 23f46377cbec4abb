// cashet lineage graph: pan (drag), zoom (wheel), reset (double-click), and highlight the
// edges of the node under the pointer. The graph itself is drawn by the server; without
// this script it is still there, and every node still links to its commit.
"use strict";
(function () {
  const svg = document.querySelector("svg.lineage");
  if (!svg) return;
  const base = svg.viewBox.baseVal;
  const home = { x: base.x, y: base.y, w: base.width, h: base.height };
  let view = Object.assign({}, home);
  const apply = () => svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
  const scale = () => view.w / svg.getBoundingClientRect().width;

  svg.addEventListener("wheel", (event) => {
    event.preventDefault();
    const rect = svg.getBoundingClientRect();
    const k = event.deltaY < 0 ? 0.85 : 1 / 0.85;
    const px = view.x + ((event.clientX - rect.left) / rect.width) * view.w;
    const py = view.y + ((event.clientY - rect.top) / rect.height) * view.h;
    const w = Math.min(Math.max(view.w * k, home.w / 8), home.w * 4);
    const h = (w / view.w) * view.h;
    view = { x: px - ((px - view.x) * w) / view.w, y: py - ((py - view.y) * h) / view.h, w, h };
    apply();
  }, { passive: false });

  let drag = null;
  let moved = false;
  svg.addEventListener("pointerdown", (event) => {
    drag = { x: event.clientX, y: event.clientY, view: Object.assign({}, view) };
    moved = false;
  });
  window.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) {
      moved = true;
      svg.classList.add("dragging");
    }
    const s = scale();
    view = Object.assign({}, drag.view, { x: drag.view.x - dx * s, y: drag.view.y - dy * s });
    apply();
  });
  window.addEventListener("pointerup", () => {
    drag = null;
    svg.classList.remove("dragging");
  });
  // A drag that ends on a node is a pan, not a click on its link.
  svg.addEventListener("click", (event) => {
    if (moved) {
      event.preventDefault();
      moved = false;
    }
  }, true);
  svg.addEventListener("dblclick", () => {
    view = Object.assign({}, home);
    apply();
  });

  const edges = Array.from(svg.querySelectorAll("path.edge"));
  svg.querySelectorAll("g.node").forEach((node) => {
    const hash = node.dataset.hash;
    const touching = edges.filter((e) => e.dataset.from === hash || e.dataset.to === hash);
    node.addEventListener("pointerenter", () => {
      node.classList.add("lit");
      touching.forEach((e) => e.classList.add("lit"));
    });
    node.addEventListener("pointerleave", () => {
      node.classList.remove("lit");
      touching.forEach((e) => e.classList.remove("lit"));
    });
  });
})();
