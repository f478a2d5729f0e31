// The data explorer's chart: asks the server for the chosen columns over a
// range of rows (it sends at most a few thousand points a series, the
// extremes of each run of rows) and draws them with uPlot. Dragging across
// the chart zooms into those rows; the buttons pan and zoom out.
(function () {
  "use strict";
  const form = document.getElementById("chart-form");
  const holder = document.getElementById("chart");
  const status = document.getElementById("chart-status");
  if (!form || !holder || !window.uPlot) {
    return;
  }
  const base = form.dataset.base;
  const size = Number(form.dataset.size);
  const maxPoints = Number(form.dataset.maxPoints);
  const colors = ["#417690", "#d2691e", "#2e8b57", "#8b008b", "#b22222", "#4682b4", "#808000", "#000"];
  let plot = null;
  const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 3 });
  const number = new Intl.NumberFormat("en", { maximumFractionDigits: 6 });
  // Axis labels short enough to fit: 1.77B rather than 1,770,000,000.
  const ticks = (u, values) => values.map((v) => (Math.abs(v) >= 1e4 ? compact.format(v) : number.format(v)));
  let shown = null;

  function say(text, error) {
    status.textContent = text;
    status.className = error ? "errornote" : "help muted";
  }

  async function draw(from, to) {
    from = Math.max(0, Math.floor(from));
    to = Math.min(size, Math.ceil(to));
    if (to - from < 2) {
      to = Math.min(size, from + 2);
      from = Math.max(0, to - 2);
    }
    form.elements.from.value = from;
    form.elements.to.value = to;
    const query = new URLSearchParams();
    form.querySelectorAll("input[name=y]:checked").forEach((box) => query.append("y", box.value));
    if (!query.has("y")) {
      say("Choose a column to draw.", true);
      return;
    }
    if (form.elements.x.value) {
      query.set("x", form.elements.x.value);
    }
    query.set("from", from);
    query.set("to", to);
    const width = Math.max(300, holder.clientWidth - 20);
    query.set("points", Math.min(maxPoints, width * 2));
    say("Reading rows " + from + " to " + to + "…", false);
    const started = performance.now();
    const response = await fetch(base + "chart/?" + query, { credentials: "same-origin" });
    const answer = await response.json().catch(() => ({ detail: response.statusText }));
    if (!response.ok) {
      say(answer.detail || "The chart could not be read.", true);
      return;
    }
    shown = answer;
    const xs = [];
    let previous = from;
    for (let i = 0; i < answer.x.length; i++) {
      previous = answer.x[i] === null ? previous : answer.x[i];
      xs.push(previous);
    }
    const data = [xs].concat(answer.series.map((s) => s.values));
    // Each column on a scale of its own (a timestamp and a temperature
    // differ by orders of magnitude); the first two with an axis each.
    const scales = { x: { time: false } };
    const axes = [{ values: ticks, size: 50 }];
    answer.series.forEach((s, i) => {
      scales["y" + i] = { auto: true };
      if (i < 2) {
        axes.push({
          scale: "y" + i,
          side: i === 0 ? 3 : 1,
          values: ticks,
          size: 70,
          stroke: colors[i],
          grid: { show: i === 0 },
        });
      }
    });
    const options = {
      width: width,
      height: 360,
      scales: scales,
      axes: axes,
      series: [{ label: answer.x_name, value: (u, v) => (v === null ? "--" : number.format(v)) }].concat(
        answer.series.map((s, i) => ({
          label: s.name,
          scale: "y" + i,
          stroke: colors[i % colors.length],
          width: 1,
        }))
      ),
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: { setSelect: [zoomToSelection] },
    };
    if (plot) {
      plot.destroy();
    }
    plot = new uPlot(options, data, holder);
    const took = Math.round(performance.now() - started);
    window.explorerShown = {
      from: answer.from,
      to: answer.to,
      points: answer.rows.length,
      series: answer.series.map((s) => s.values.length),
      downsampled: answer.downsampled,
      serverMs: answer.elapsed_ms,
      totalMs: took,
    };
    say(
      answer.rows.length + " points for rows " + answer.from + " to " + answer.to +
        (answer.downsampled ? " (min and max of each run of rows)" : "") +
        ", drawn in " + took + " ms. Drag across the chart to zoom in.",
      false
    );
  }

  // The rows between two x values: the row index itself, or the rows of
  // the points drawn at those values of the x column.
  function rowsBetween(low, high) {
    if (shown.x_name === "index") {
      return [low, high + 1];
    }
    let first = null;
    let last = null;
    shown.x.forEach((x, i) => {
      if (x !== null && x >= low && x <= high) {
        first = first === null ? shown.rows[i] : Math.min(first, shown.rows[i]);
        last = last === null ? shown.rows[i] : Math.max(last, shown.rows[i]);
      }
    });
    return first === null ? null : [first, last + 1];
  }

  function zoomToSelection(u) {
    if (u.select.width < 3 || !shown) {
      return;
    }
    const low = u.posToVal(u.select.left, "x");
    const high = u.posToVal(u.select.left + u.select.width, "x");
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    const rows = rowsBetween(low, high);
    if (rows) {
      draw(rows[0], rows[1]);
    }
  }

  function current() {
    return [Number(form.elements.from.value), Number(form.elements.to.value)];
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const [from, to] = current();
    draw(from, to);
  });
  document.getElementById("chart-pan-left").addEventListener("click", () => {
    const [from, to] = current();
    const step = Math.min(from, Math.ceil((to - from) / 2));
    draw(from - step, to - step);
  });
  document.getElementById("chart-pan-right").addEventListener("click", () => {
    const [from, to] = current();
    const step = Math.min(size - to, Math.ceil((to - from) / 2));
    draw(from + step, to + step);
  });
  document.getElementById("chart-zoom-out").addEventListener("click", () => {
    const [from, to] = current();
    const half = to - from;
    draw(from - Math.ceil(half / 2), to + Math.ceil(half / 2));
  });
  document.getElementById("chart-reset").addEventListener("click", () => draw(0, size));
  window.explorerDraw = draw;
  draw(0, size);
})();
