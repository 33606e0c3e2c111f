// Draws every chart of a Bedside report page from its JSON specification.
// Each <div data-chart="ID"> names a <script type="application/json" id="ID"> holding
// {"data": [...], "layout": {...}} built on the server; no inline script is needed.
"use strict";

(function () {
  const config = {
    responsive: true,
    displaylogo: false,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"],
  };

  function draw(target) {
    const source = document.getElementById(target.dataset.chart);
    if (!source) {
      return Promise.resolve();
    }
    const spec = JSON.parse(source.textContent);
    return window.Plotly.newPlot(target, spec.data, spec.layout, config).then(function () {
      target.dataset.rendered = "true";
    });
  }

  function drawAll() {
    if (!window.Plotly) {
      document.body.dataset.charts = "unavailable";
      return;
    }
    const targets = Array.from(document.querySelectorAll("[data-chart]"));
    Promise.all(targets.map(draw)).then(function () {
      document.body.dataset.charts = "drawn";
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
