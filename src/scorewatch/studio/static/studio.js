/* scorewatch studio: partial page updates, charts (uPlot), the Logs editor and live metrics.
   No framework and no build step. Values from telemetry reach the page only as text (textContent),
   never as HTML; the server escapes everything it renders. */
(function () {
  "use strict";

  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
  const csrf = () => ($('meta[name="csrf-token"]') || {}).content || "";
  const COLORS = ["#2f6fdf", "#d8453b", "#2a9d5c", "#9c5fd6", "#e0912f", "#1d9bb2", "#7a7a7a", "#c94f9a"];
  const charts = [];

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // ------------------------------------------------------------ partial navigation (htmx-style)
  async function load(url, push) {
    let response;
    try {
      response = await fetch(url, { headers: { "x-studio-partial": "1" }, credentials: "same-origin" });
    } catch (err) {
      location.href = url;
      return;
    }
    if (response.redirected || !(response.headers.get("content-type") || "").startsWith("text/html")) {
      location.href = response.url || url;
      return;
    }
    const html = await response.text();
    teardown();
    $("#app").innerHTML = html;
    if (push) history.pushState({}, "", url);
    window.scrollTo(0, 0);
    init();
  }

  function submitPartial(form) {
    const url = new URL(form.getAttribute("action") || location.pathname, location.href);
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (value !== "") params.append(name, value);
    }
    if (params.get("range") !== "custom") {
      params.delete("start");
      params.delete("end");
    }
    url.search = params.toString();
    load(url.href, true);
  }

  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-partial]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    load(link.href, true);
  });
  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-partial]");
    if (!form) return;
    event.preventDefault();
    submitPartial(form);
  });
  document.addEventListener("change", (event) => {
    const target = event.target;
    if (target.matches("select[data-navigate]")) {
      location.href = target.value;
    } else if (target.matches("select[data-range]")) {
      const custom = $(".custom-range");
      if (custom) custom.classList.toggle("hidden", target.value !== "custom");
      if (target.value !== "custom") submitPartial(target.form);
    }
  });
  window.addEventListener("popstate", () => load(location.href, false));

  // Service and instance choices, fetched when the filter is first used.
  document.addEventListener("focusin", async (event) => {
    const input = event.target.closest("input[data-choices]");
    if (!input || input.dataset.loaded) return;
    input.dataset.loaded = "1";
    const params = new URLSearchParams(location.search);
    const response = await fetch(input.dataset.choices + "?" + new URLSearchParams({ range: params.get("range") || "" }),
      { credentials: "same-origin" });
    if (!response.ok) return;
    const body = await response.json();
    const services = new Set(), instances = new Set();
    for (const row of body.services) {
      if (row.cloud_RoleName) services.add(row.cloud_RoleName);
      if (row.cloud_RoleInstance) instances.add(row.cloud_RoleInstance);
    }
    fill($("#service-choices"), services);
    fill($("#instance-choices"), instances);
  });

  function fill(list, values) {
    if (!list) return;
    list.replaceChildren(...Array.from(values).sort().map((value) => el("option", { value: value })));
  }

  // ------------------------------------------------------------ charts
  function pageData() {
    const node = $("#page-data");
    return node ? JSON.parse(node.textContent) : null;
  }

  function columnIndex(result, name) {
    return result.columns.findIndex((c) => c.name === name);
  }

  function seconds(value) {
    return Date.parse(value) / 1000;
  }

  function fmt(value, unit) {
    if (value === null || value === undefined) return "–";
    const text = Math.abs(value) >= 100 ? Math.round(value).toLocaleString() : (+value.toFixed(2)).toLocaleString();
    return unit ? text + " " + unit : text;
  }

  // Rows of (x, [y per series]) for a time chart: every bin of the range, empty bins as 0 for counts.
  function timeSeries(result, filters, ys, split, fillZero, xName) {
    const xi = columnIndex(result, xName);
    const grain = { "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400 }[filters.grain] || 3600;
    const first = Math.floor(seconds(filters.start) / grain) * grain;
    const last = seconds(filters.end);
    const xs = [];
    for (let t = first; t <= last; t += grain) xs.push(t);
    const series = [];
    if (split) {
      const si = columnIndex(result, split), yi = columnIndex(result, ys[0].name);
      const groups = new Map();
      for (const row of result.rows) {
        const key = String(row[si] === null ? "(empty)" : row[si]);
        if (!groups.has(key)) groups.set(key, new Map());
        groups.get(key).set(seconds(row[xi]), row[yi]);
      }
      for (const [key, values] of groups) series.push({ label: key, values: values });
    } else {
      for (const y of ys) {
        const yi = columnIndex(result, y.name), values = new Map();
        for (const row of result.rows) values.set(seconds(row[xi]), row[yi]);
        series.push({ label: y.label, values: values });
      }
    }
    const data = [xs];
    for (const s of series) data.push(xs.map((x) => (s.values.has(x) ? s.values.get(x) : fillZero ? 0 : null)));
    return { data: data, labels: series.map((s) => s.label) };
  }

  function makePlot(node, data, labels, options) {
    const width = Math.max(node.clientWidth || 0, 280);
    const bars = options.kind === "bars";
    const opts = {
      width: width,
      height: options.height || 170,
      legend: { show: labels.length > 1 || !!options.legend },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: options.xRange ? { time: options.time !== false, auto: false, range: options.xRange } : { time: options.time !== false },
        y: { range: (u, min, max) => [Math.min(0, min || 0), max > 0 ? max * 1.1 : 1] },
      },
      axes: [{ stroke: "#666", grid: { stroke: "#eee" } },
        { stroke: "#666", grid: { stroke: "#eee" }, size: 55, values: (u, vals) => vals.map((v) => fmt(v)) }],
      series: [{ label: options.xLabel || (options.time === false ? "x" : "time") }].concat(labels.map((label, i) => ({
        label: label,
        stroke: COLORS[i % COLORS.length],
        fill: bars ? COLORS[i % COLORS.length] + "99" : COLORS[i % COLORS.length] + "18",
        width: bars ? 0 : 1.5,
        paths: bars ? uPlot.paths.bars({ size: [0.8, 60] }) : undefined,
        points: { show: options.points !== undefined ? options.points : data[i + 1].filter((v) => v !== null).length < 12 },
        value: (u, v) => fmt(v, options.unit),
      }))),
    };
    if (options.xValues) opts.axes[0].values = options.xValues;
    if (node.plot) { node.plot.destroy(); charts.splice(charts.indexOf(node.plot), 1); }  // drawn again: the old one goes
    node.replaceChildren();
    const plot = new uPlot(opts, data, node);
    charts.push(plot);
    node.plot = plot;
    return plot;
  }

  function drawPageChart(node, page) {
    const result = page.queries && page.queries[node.dataset.query];
    if (!result || result.error) return;
    const ys = node.dataset.series.split(",").map((item) => {
      const [name, label] = item.split(":");
      return { name: name, label: label || name };
    });
    if (node.dataset.kind === "bars") {
      const xi = columnIndex(result, node.dataset.x), yi = columnIndex(result, ys[0].name);
      const xs = result.rows.map((_, i) => i), labels = result.rows.map((row) => row[xi]);
      const data = [xs, result.rows.map((row) => row[yi])];
      makePlot(node, data, [ys[0].label], {
        kind: "bars", time: false, height: +node.dataset.height, unit: "",
        xValues: (u, vals) => vals.map((v) => (labels[v] === undefined ? "" : fmt(labels[v], node.dataset.unit))),
      });
      return;
    }
    const series = timeSeries(result, page.filters, ys, node.dataset.split, node.dataset.fill === "zero",
      node.dataset.x || "timestamp");
    makePlot(node, series.data, series.labels, { height: +node.dataset.height, unit: node.dataset.unit });
  }

  // A chart whose data is its own JSON part (data-src), fetched after the page is shown: the page
  // does not wait for a slow query (Transaction search's count of matches over the whole range).
  // A part that could not count all of its range in time names the rest (next): it is fetched in
  // turn and the chart is drawn again with each, newest first, as log tools fill in a histogram.
  async function drawDeferredChart(node) {
    const name = node.dataset.query;
    const status = $('[data-deferred-status="' + name + '"]');
    const show = (text, failed) => {
      if (!status || !node.isConnected) return;
      status.textContent = text;
      status.classList.toggle("error", !!failed);
    };
    let url = node.dataset.src, shown = null, elapsed = 0;
    while (url) {
      let part;
      try {
        const response = await fetch(url, { credentials: "same-origin" });
        part = await response.json();
        if (!response.ok) throw new Error((part.error && part.error.message) || response.statusText);
      } catch (err) {
        show("could not count: " + err.message, true);
        return;
      }
      if (!node.isConnected) return;  // the page changed meanwhile
      const result = part.queries[name];
      if (result.error) {
        show(result.error.message, true);
        return;
      }
      if (shown) result.rows = shown.queries[name].rows.concat(result.rows);
      shown = part;
      elapsed += result.elapsed_ms;
      const yi = columnIndex(result, node.dataset.series.split(",")[0].split(":")[0]);
      const total = result.rows.reduce((sum, row) => sum + (row[yi] || 0), 0);
      const matches = fmt(total) + (total === 1 ? " match" : " matches");
      url = part.next;
      show(url ? "counting… " + matches + " since " + result.searched_from.replace("T", " ").slice(0, 16)
        : matches + " · " + Math.round(elapsed) + " ms");
      drawPageChart(node, part);
    }
  }

  // ------------------------------------------------------------ Logs: render charts of a result
  const NUMERIC = new Set(["int", "long", "real"]);

  function renderResult(area, result) {
    area.replaceChildren();
    const render = result.render;
    if (!render || !result.rows.length) return;
    const kind = render.visualization;
    const names = result.columns.map((c) => c.name), types = result.columns.map((c) => c.type);
    const wanted = render.ycolumns ? [].concat(render.ycolumns) : null;
    const node = el("div", { class: "chart", id: "logs-chart-" + kind });
    area.appendChild(node);
    const time = ["timechart", "linechart", "areachart", "scatterchart"].includes(kind);
    let xi = render.xcolumn ? names.indexOf(render.xcolumn) : -1;
    if (xi < 0) xi = types.findIndex((t) => (time ? t === "datetime" : !NUMERIC.has(t)));
    if (xi < 0 && time) xi = types.findIndex((t) => !NUMERIC.has(t));
    if (xi < 0) xi = 0;
    const ys = types.map((t, i) => i).filter((i) => i !== xi && NUMERIC.has(types[i]) && (!wanted || wanted.includes(names[i])));
    const splits = types.map((t, i) => i).filter((i) => i !== xi && !ys.includes(i) && !NUMERIC.has(types[i]) && types[i] !== "dynamic");
    if (kind === "piechart") return pie(node, result, xi, ys[0]);
    if (!ys.length) return;
    const isTime = types[xi] === "datetime";
    // x values, series keyed by split columns and y column
    const xsSet = new Map(), series = new Map();
    for (const row of result.rows) {
      const x = isTime ? seconds(row[xi]) : row[xi];
      if (!xsSet.has(x)) xsSet.set(x, xsSet.size);
      const key = splits.map((i) => String(row[i] === null ? "(empty)" : row[i])).join(", ");
      for (const y of ys) {
        const label = (key ? key + " · " : "") + (ys.length > 1 || !key ? names[y] : "");
        if (!series.has(label)) series.set(label, new Map());
        series.get(label).set(x, row[y]);
      }
    }
    let xs = Array.from(xsSet.keys());
    if (isTime) xs.sort((a, b) => a - b);
    const labels = Array.from(series.keys());
    const positions = isTime ? xs : xs.map((_, i) => i);
    const data = [positions].concat(labels.map((label) => xs.map((x) => {
      const v = series.get(label).get(x);
      return v === undefined ? null : v;
    })));
    const bars = kind === "columnchart" || kind === "barchart";
    // one time alone: a little room around it, not an axis of years
    const xRange = isTime && xs.length === 1 ? [xs[0] - 60, xs[0] + 60] : undefined;
    makePlot(node, data, labels.map((l) => l.replace(/ · $/, "")), {
      kind: bars ? "bars" : "line", time: isTime, legend: true, height: 240, xRange: xRange,
      xValues: isTime ? undefined : (u, vals) => vals.map((v) => (xs[v] === undefined ? "" : String(xs[v]))),
    });
  }

  function pie(node, result, xi, yi) {
    if (yi === undefined) return;
    const canvas = el("canvas", { width: "360", height: "240", class: "pie" });
    node.appendChild(canvas);
    const legend = el("ul", { class: "pie-legend" });
    node.appendChild(legend);
    const ctx = canvas.getContext("2d");
    const total = result.rows.reduce((sum, row) => sum + Math.max(0, +row[yi] || 0), 0) || 1;
    let angle = -Math.PI / 2;
    result.rows.forEach((row, i) => {
      const share = Math.max(0, +row[yi] || 0) / total;
      ctx.beginPath();
      ctx.moveTo(120, 120);
      ctx.arc(120, 120, 110, angle, angle + share * 2 * Math.PI);
      ctx.closePath();
      ctx.fillStyle = COLORS[i % COLORS.length];
      ctx.fill();
      angle += share * 2 * Math.PI;
      const item = el("li", {}, String(row[xi]) + ": " + fmt(row[yi]));
      item.prepend(el("span", { class: "swatch swatch-" + (i % COLORS.length) }));
      legend.appendChild(item);
    });
  }

  // ------------------------------------------------------------ Logs page
  const PAGE_ROWS = 50;
  const HISTORY_KEY = "scorewatch.studio.history";

  function initLogs() {
    const form = $("#logs-form");
    if (!form) return;
    const editor = $("#kql"), endpoint = form.dataset.endpoint;
    const state = { result: null, page: 0 };

    function params() {
      return new URLSearchParams({ query: editor.value, range: form.elements.range.value });
    }
    function updateDownloads() {
      $("#download-csv").href = endpoint + ".csv?" + params() + "&limit=1000000000";
      $("#download-json").href = endpoint + ".json?" + params() + "&limit=1000000000&download=1";
    }
    function pastQueries() {
      try { return JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]"); } catch (e) { return []; }
    }
    function showHistory() {
      const select = $("#history");
      select.replaceChildren(el("option", { value: "" }, "History"));
      pastQueries().forEach((text, i) => select.appendChild(el("option", { value: String(i) }, text.replace(/\s+/g, " ").slice(0, 90))));
    }
    function remember(text) {
      const items = [text].concat(pastQueries().filter((t) => t !== text)).slice(0, 30);
      localStorage.setItem(HISTORY_KEY, JSON.stringify(items));
      showHistory();
    }
    function markError(error) {
      const box = $("#logs-error"), marks = $("#editor-marks");
      const inner = error.innererror || {};
      box.classList.remove("hidden");
      box.replaceChildren();
      const where = inner.line ? " (line " + inner.line + ", column " + inner.column + ")" : "";
      box.appendChild(el("div", { class: "message" }, (inner.message || error.message) + where));
      if (inner.snippet !== undefined && inner.line) {
        box.appendChild(el("pre", { class: "snippet" }, inner.snippet + "\n" + " ".repeat(inner.column - 1) + "^".repeat(inner.length || 1)));
        // underline the offending text in the editor itself
        const lines = editor.value.split("\n");
        let offset = 0;
        for (let i = 0; i < inner.line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
        offset += inner.column - 1;
        const length = Math.max(1, inner.length || 1);
        marks.replaceChildren(document.createTextNode(editor.value.slice(0, offset)),
          el("mark", { id: "kql-error-mark", "data-line": String(inner.line), "data-column": String(inner.column) },
            editor.value.slice(offset, offset + length) || " "),
          document.createTextNode(editor.value.slice(offset + length) + "\n"));
        marks.scrollTop = editor.scrollTop;
      }
    }
    function clearError() {
      $("#logs-error").classList.add("hidden");
      $("#editor-marks").replaceChildren(document.createTextNode(editor.value + "\n"));
    }
    function showPage() {
      const result = state.result, area = $("#logs-results"), pager = $("#logs-pager");
      area.replaceChildren();
      pager.replaceChildren();
      if (!result) return;
      const table = el("table", { class: "results", id: "logs-table" });
      const head = el("tr");
      result.columns.forEach((c) => head.appendChild(el("th", { title: c.type }, c.name)));
      table.appendChild(el("thead")).appendChild(head);
      const body = el("tbody");
      for (const row of result.rows.slice(state.page * PAGE_ROWS, (state.page + 1) * PAGE_ROWS)) {
        const tr = el("tr");
        row.forEach((value) => tr.appendChild(el("td", {}, value === null ? "" : typeof value === "object" ? JSON.stringify(value) : value)));
        body.appendChild(tr);
      }
      table.appendChild(body);
      area.appendChild(table);
      const pages = Math.ceil(result.rows.length / PAGE_ROWS);
      if (pages > 1) {
        const prev = el("button", { type: "button", id: "page-prev" }, "‹ Previous");
        const next = el("button", { type: "button", id: "page-next" }, "Next ›");
        prev.disabled = state.page === 0;
        next.disabled = state.page >= pages - 1;
        prev.addEventListener("click", () => { state.page--; showPage(); });
        next.addEventListener("click", () => { state.page++; showPage(); });
        pager.append(prev, el("span", { id: "page-info" }, "page " + (state.page + 1) + " of " + pages), next);
      }
    }
    async function run() {
      const text = editor.value;
      if (!text.trim()) return;
      updateDownloads();
      window.history.replaceState({}, "", endpoint + "?" + params());
      $("#logs-status").textContent = "running…";
      const response = await fetch(endpoint + ".json", {
        method: "POST", credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": csrf() },
        body: JSON.stringify({ query: text, range: form.elements.range.value }),
      });
      const body = await response.json();
      remember(text);
      const result = body.queries ? body.queries.result : null;
      if (!response.ok || !result || result.error) {
        state.result = null;
        showPage();
        $("#logs-chart").replaceChildren();
        $("#logs-status").textContent = "";
        markError((result && result.error) || body.error || { message: "the query failed" });
        return;
      }
      clearError();
      state.result = result;
      state.page = 0;
      $("#logs-status").textContent = result.rows.length.toLocaleString() + " rows · " + result.elapsed_ms + " ms" +
        (result.truncated ? " · more rows matched than are shown" : "");
      showPage();
      renderResult($("#logs-chart"), result);
    }
    form.addEventListener("submit", (event) => { event.preventDefault(); run(); });
    editor.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); run(); }
    });
    editor.addEventListener("input", () => { clearError(); updateDownloads(); });
    editor.addEventListener("scroll", () => { $("#editor-marks").scrollTop = editor.scrollTop; });
    $("#history").addEventListener("change", (event) => {
      const items = pastQueries(), i = event.target.value;
      if (i !== "" && items[+i] !== undefined) { editor.value = items[+i]; clearError(); }
      event.target.value = "";
    });
    showHistory();
    clearError();
    updateDownloads();
    if (form.dataset.run) run();
  }

  // ------------------------------------------------------------ Live metrics
  let liveSource = null;
  const WINDOW_S = 60;

  function initLive() {
    const root = $("#live");
    if (!root) return;
    const buckets = new Map();  // second → sums
    const totals = { requests: 0, failed: 0 };
    const plots = {};
    for (const node of $$("[data-live]", root)) {
      const name = node.dataset.live;
      plots[name] = makePlot(node, [[], []], [name], { height: 150, unit: name.endsWith("_ms") ? "ms" : "", points: false });
    }
    function redraw() {
      const now = Math.floor(Date.now() / 1000);
      const xs = [];
      for (let t = now - WINDOW_S; t <= now; t++) xs.push(t);
      for (const name of Object.keys(plots)) {
        const ys = xs.map((t) => {
          const b = buckets.get(t);
          if (!b) return name.endsWith("_ms") ? null : 0;
          if (name === "avg_duration_ms") return b.requests ? b.duration / b.requests : null;
          return b[name];
        });
        plots[name].setData([xs, ys]);
      }
      for (const t of buckets.keys()) if (t < now - WINDOW_S) buckets.delete(t);
    }
    liveSource = new EventSource(root.dataset.stream);
    liveSource.onopen = () => { $("#live-status").textContent = "live"; $("#live-status").className = "badge ok"; };
    liveSource.onerror = () => { $("#live-status").textContent = "reconnecting…"; $("#live-status").className = "badge"; };
    liveSource.onmessage = (message) => {
      const event = JSON.parse(message.data);
      const t = Math.floor(event.t / 1000);
      const b = buckets.get(t) || { requests: 0, failed: 0, duration: 0, dependencies: 0, exceptions: 0 };
      b.requests += event.requests;
      b.failed += event.failed;
      b.duration += (event.avg_duration_ms || 0) * event.requests;
      b.dependencies += event.dependencies;
      b.exceptions += event.exceptions;
      buckets.set(t, b);
      totals.requests += event.requests;
      totals.failed += event.failed;
      $("#live-requests-total").textContent = totals.requests;
      $("#live-failed-total").textContent = totals.failed;
      for (const entry of event.feed) {
        const item = el("li", { class: "feed-" + entry.kind });
        item.appendChild(el("span", { class: "when" }, entry.time.replace("T", " ").replace("Z", "")));
        item.appendChild(el("span", { class: "kind" }, entry.kind));
        item.appendChild(el("span", { class: "head" }, entry.kind === "request"
          ? entry.name + " · " + entry.resultCode + " · " + entry.duration_ms + " ms"
          : entry.type + ": " + entry.message));
        if (entry.operation_Id) {
          const link = el("a", { href: root.dataset.base + "/transaction/" + encodeURIComponent(entry.operation_Id), class: "tx-link" }, "details");
          item.appendChild(link);
        }
        $("#live-feed").prepend(item);
      }
      while ($("#live-feed").children.length > 50) $("#live-feed").lastChild.remove();
      if (event.processes) {
        const body = $("#live-processes tbody");
        body.replaceChildren(...event.processes.map((p) => {
          const tr = el("tr");
          [p.service, p.pid, p.cpu_percent, p.memory_mb].forEach((v) => tr.appendChild(el("td", {}, v)));
          return tr;
        }));
      }
      redraw();
    };
  }

  // ------------------------------------------------------------ page life
  function teardown() {
    if (liveSource) { liveSource.close(); liveSource = null; }
    while (charts.length) charts.pop().destroy();
  }

  function init() {
    const page = pageData();
    if (page && page.queries) $$(".chart[data-query]:not([data-src])").forEach((node) => drawPageChart(node, page));
    $$(".chart[data-src]").forEach(drawDeferredChart);
    initLogs();
    initLive();
  }

  window.addEventListener("pagehide", teardown);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
