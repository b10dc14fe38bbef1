// moodbgm score editor: sections as blocks over the voice waveform and the phrases; drag (or arrow-key)
// a boundary, snapping to phrase gaps, scene cuts and bar lines; split, merge, emotion, intensity, lock, new take;
// re-plan the unlocked sections (POST .../timeline/replan); re-render (PUT /jobs/{id}/timeline) and swap the player to the new version, keeping the others for A/B.
(function () {
  "use strict";
  const API = "/api/v1";
  const $ = (id) => document.getElementById(id);
  const SNAP_PX = 10, FINE_S = 0.1;
  let ed = null; // {id, data, sections, headers, colors, onVersion, peaks}

  function fmt(t) { return t.toFixed(2) + " s"; }

  async function open(jobId, headers, colors, onVersion) {
    ed = { id: jobId, headers, colors, onVersion, peaks: null, data: null, sections: [] };
    await reload();
    $("editor").hidden = false;
    $("editor").dataset.job = jobId;
    loadPeaks();
  }

  async function reload() {
    const r = await fetch(`${API}/jobs/${ed.id}/editor`, { headers: ed.headers() });
    if (!r.ok) { $("ed-error").textContent = "The editor could not load this job."; return; }
    ed.data = await r.json();
    ed.sections = ed.data.sections.map((s) => ({
      start: s.start, end: s.end, emotion: s.emotion,
      intensity: s.intensity == null ? 0.5 : s.intensity,
      lock: !!s.lock, take: s.take || 0,
    }));
    render();
    describePlan();
    renderVersions();
  }

  async function loadPeaks() {
    // the voice stem's peaks (one per pixel column) from a signed link of the job
    try {
      const job = await (await fetch(`${API}/jobs/${ed.id}`, { headers: ed.headers() })).json();
      const f = job.files.find((x) => x.name === "voice.wav");
      if (!f) return;
      const buf = await (await fetch(f.url)).arrayBuffer();
      const ctx = new OfflineAudioContext(1, 1, 8000);
      const audio = await ctx.decodeAudioData(buf);
      const ch = audio.getChannelData(0), cols = 960, step = Math.max(1, Math.floor(ch.length / cols));
      const peaks = new Float32Array(cols);
      for (let i = 0; i < cols; i++) {
        let m = 0;
        for (let j = i * step; j < Math.min(ch.length, (i + 1) * step); j++) m = Math.max(m, Math.abs(ch[j]));
        peaks[i] = m;
      }
      ed.peaks = peaks;
      drawWave();
    } catch (err) {
      $("ed-note").textContent = "The waveform could not be drawn in this browser; phrases and guides still are.";
    }
  }

  // snap targets: the middles of the silences between phrases, scene cuts and the composer's bar lines
  // (bars.json of the current version; a generator without a tempo plan gives none)
  function guides() {
    const out = [];
    const ph = ed.data.phrases;
    for (let i = 1; i < ph.length; i++) {
      if (ph[i].start > ph[i - 1].end) out.push({ t: (ph[i - 1].end + ph[i].start) / 2, kind: "gap" });
    }
    for (const c of ed.data.cuts) out.push({ t: c, kind: "cut" });
    for (const sec of ed.data.bars || []) for (const b of sec.bars) if (b > 1e-3) out.push({ t: b, kind: "bar" });
    return out.sort((a, b) => a.t - b.t);
  }

  function describePlan() {
    const bars = ed.data.bars;
    if (!bars) {
      $("ed-plan").textContent = `No bar lines: the ${ed.data.generator} generator records no tempo plan, so only phrase gaps and scene cuts are guides.`;
      return;
    }
    $("ed-plan").textContent = "Music plan: " + bars.map((s) =>
      `${s.start.toFixed(1)}–${s.end.toFixed(1)} s ${s.emotion}, ${Math.round(s.tempo)} BPM ${s.meter} (${s.bars.length} bars)`).join("; ") + ".";
  }

  function drawGuides() {
    const track = $("ed-track"), dur = ed.data.duration;
    track.querySelectorAll(".ed-guide").forEach((n) => n.remove());
    for (const g of guides()) {
      const d = document.createElement("div");
      d.className = `ed-guide ed-guide-${g.kind}`;
      d.dataset.t = g.t.toFixed(3);
      d.style.left = (100 * g.t) / dur + "%";
      d.setAttribute("aria-hidden", "true");
      track.insertBefore(d, track.querySelector(".ed-handle")); // over the blocks, under the handles
    }
  }

  function drawWave() {
    const canvas = $("ed-wave"), ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
    const dur = ed.data.duration;
    ctx.clearRect(0, 0, W, H);
    ctx.fillStyle = "#c9d3e6";
    for (const p of ed.data.phrases) ctx.fillRect((p.start / dur) * W, H - 10, Math.max(1, ((p.end - p.start) / dur) * W), 8);
    if (ed.peaks) {
      let max = 1e-6;
      for (const v of ed.peaks) max = Math.max(max, v);
      ctx.fillStyle = "#5c6270";
      ed.peaks.forEach((v, i) => { const h = (v / max) * (H - 16); ctx.fillRect((i / ed.peaks.length) * W, (H - 12 - h) / 2, 1, Math.max(1, h)); });
    }
  }

  function snap(t, px) {
    const track = $("ed-track"), dur = ed.data.duration, perPx = dur / track.clientWidth;
    let best = t, dist = SNAP_PX * perPx;
    for (const g of guides()) if (Math.abs(g.t - t) < dist && px) { best = g.t; dist = Math.abs(g.t - t); }
    return best;
  }

  function limits(k) {
    // boundary k sits between sections k-1 and k; each side keeps at least min_section
    const min = Math.min(ed.data.min_section, ed.data.duration);
    return [ed.sections[k - 1].start + min, ed.sections[k].end - min];
  }

  function moveBoundary(k, t) {
    const a = ed.sections[k - 1], b = ed.sections[k];
    if (a.lock || b.lock) { say(`Section ${a.lock ? k : k + 1} is locked; unlock it to move this boundary.`); return false; }
    const [lo, hi] = limits(k);
    if (lo > hi) return false;
    t = Math.min(hi, Math.max(lo, t));
    a.end = b.start = Math.round(t * 1000) / 1000;
    return true;
  }

  function say(msg) { $("ed-status").textContent = msg; }

  function render() {
    const track = $("ed-track"), dur = ed.data.duration;
    track.querySelectorAll(".ed-section, .ed-handle").forEach((n) => n.remove());
    ed.sections.forEach((s, k) => {
      const div = document.createElement("div");
      div.className = "ed-section" + (s.lock ? " locked" : "");
      div.style.left = (100 * s.start) / dur + "%";
      div.style.width = (100 * (s.end - s.start)) / dur + "%";
      div.style.background = (ed.colors[s.emotion] || "#999999") + Math.round(0x40 + 0x9f * s.intensity).toString(16).padStart(2, "0");
      div.textContent = `${k + 1}. ${s.emotion}${s.lock ? " (locked)" : ""}${s.take ? ` · take ${s.take + 1}` : ""}`;
      div.setAttribute("aria-hidden", "true");
      track.appendChild(div);
    });
    for (let k = 1; k < ed.sections.length; k++) {
      const h = document.createElement("div");
      const t = ed.sections[k].start, [lo, hi] = limits(k);
      h.className = "ed-handle";
      h.id = `ed-handle-${k}`;
      h.tabIndex = 0;
      h.setAttribute("role", "slider");
      h.setAttribute("aria-label", `Boundary between section ${k} (${ed.sections[k - 1].emotion}) and section ${k + 1} (${ed.sections[k].emotion})`);
      h.setAttribute("aria-valuemin", lo.toFixed(2));
      h.setAttribute("aria-valuemax", hi.toFixed(2));
      h.setAttribute("aria-valuenow", t.toFixed(2));
      h.setAttribute("aria-valuetext", fmt(t));
      h.style.left = `calc(${(100 * t) / dur}% - 6px)`;
      h.addEventListener("pointerdown", (e) => startDrag(e, k));
      h.addEventListener("keydown", (e) => keyMove(e, k));
      track.appendChild(h);
    }
    renderList();
    drawGuides();
    drawWave();
  }

  function startDrag(e, k) {
    e.preventDefault();
    const track = $("ed-track"), h = e.currentTarget;
    h.setPointerCapture(e.pointerId);
    const move = (ev) => {
      const r = track.getBoundingClientRect();
      const t = snap(((ev.clientX - r.left) / r.width) * ed.data.duration, true);
      if (moveBoundary(k, t)) { h.style.left = `calc(${(100 * ed.sections[k].start) / ed.data.duration}% - 6px)`; }
    };
    const up = () => {
      h.removeEventListener("pointermove", move);
      h.removeEventListener("pointerup", up);
      render();
      const n = $(`ed-handle-${k}`);
      if (n) n.focus();
      say(`Boundary ${k} at ${fmt(ed.sections[k].start)}.`);
    };
    h.addEventListener("pointermove", move);
    h.addEventListener("pointerup", up);
  }

  function keyMove(e, k) {
    // arrows: to the next/previous guide (Shift: 0.1 s); Home/End: as far as allowed
    const t = ed.sections[k].start, [lo, hi] = limits(k);
    let want = null;
    if (e.key === "ArrowRight" || e.key === "ArrowUp") {
      want = e.shiftKey ? t + FINE_S : (guides().find((g) => g.t > t + 1e-3) || { t: t + 1 }).t;
    } else if (e.key === "ArrowLeft" || e.key === "ArrowDown") {
      const before = guides().filter((g) => g.t < t - 1e-3);
      want = e.shiftKey ? t - FINE_S : (before.length ? before[before.length - 1].t : t - 1);
    } else if (e.key === "Home") want = lo;
    else if (e.key === "End") want = hi;
    if (want == null) return;
    e.preventDefault();
    if (moveBoundary(k, want)) { render(); $(`ed-handle-${k}`).focus(); say(`Boundary ${k} at ${fmt(ed.sections[k].start)}.`); }
  }

  function renderList() {
    const list = $("ed-sections");
    list.innerHTML = "";
    ed.sections.forEach((s, k) => {
      const li = document.createElement("li");
      li.id = `ed-sec-${k}`;
      li.setAttribute("aria-label", `Section ${k + 1}, ${fmt(s.start)} to ${fmt(s.end)}`);
      const opts = ed.data.emotions.map((e) => `<option value="${e}"${e === s.emotion ? " selected" : ""}>${e}</option>`).join("");
      li.innerHTML = `<span class="ed-span">${k + 1}. ${s.start.toFixed(1)}–${s.end.toFixed(1)} s</span>
        <label>Emotion of section ${k + 1} <select data-k="${k}" class="ed-emotion">${opts}</select></label>
        <label>Intensity of section ${k + 1} <input type="range" min="0" max="1" step="0.05" value="${s.intensity}" data-k="${k}" class="ed-intensity" aria-describedby="ed-int-help" aria-valuetext="${intensityWords(s.intensity)}"></label>
        <label><input type="checkbox" data-k="${k}" class="ed-lock"${s.lock ? " checked" : ""}> Lock section ${k + 1}</label>
        <button type="button" data-k="${k}" class="ed-split">Split section ${k + 1}</button>
        ${k + 1 < ed.sections.length ? `<button type="button" data-k="${k}" class="ed-merge">Merge section ${k + 1} with ${k + 2}</button>` : ""}
        <button type="button" data-k="${k}" class="ed-take">New take of section ${k + 1}</button>`;
      list.appendChild(li);
    });
    list.querySelectorAll(".ed-emotion").forEach((n) => n.addEventListener("change", () => { ed.sections[+n.dataset.k].emotion = n.value; render(); }));
    list.querySelectorAll(".ed-intensity").forEach((n) => n.addEventListener("change", () => { ed.sections[+n.dataset.k].intensity = +n.value; render(); }));
    list.querySelectorAll(".ed-lock").forEach((n) => n.addEventListener("change", () => { ed.sections[+n.dataset.k].lock = n.checked; render(); }));
    list.querySelectorAll(".ed-split").forEach((n) => n.addEventListener("click", () => split(+n.dataset.k)));
    list.querySelectorAll(".ed-merge").forEach((n) => n.addEventListener("click", () => merge(+n.dataset.k)));
    list.querySelectorAll(".ed-take").forEach((n) => n.addEventListener("click", () => { ed.sections[+n.dataset.k].take += 1; rerender(); }));
  }

  function intensityWords(v) {
    const words = v < 0.5 ? "sparser, legato" : v > 0.5 ? "denser, more voices and drums" : "as the emotion plays it";
    return `${v.toFixed(2)}, ${words}`;
  }

  function split(k) {
    const s = ed.sections[k], min = ed.data.min_section;
    if (s.lock) { say(`Section ${k + 1} is locked.`); return; }
    if (s.end - s.start < 2 * min) { say(`Section ${k + 1} is too short to split (each half needs ${min} s).`); return; }
    let t = snap((s.start + s.end) / 2, true);
    if (t - s.start < min || s.end - t < min) t = (s.start + s.end) / 2;
    ed.sections.splice(k + 1, 0, { ...s, start: t, take: 0 });
    s.end = t;
    render();
    say(`Section ${k + 1} split at ${fmt(t)}.`);
  }

  function merge(k) {
    const a = ed.sections[k], b = ed.sections[k + 1];
    if (a.lock || b.lock) { say("A locked section cannot be merged."); return; }
    a.end = b.end;
    ed.sections.splice(k + 1, 1);
    render();
    say(`Sections ${k + 1} and ${k + 2} merged.`);
  }

  function editBody() {
    return { sections: ed.sections.map((s) => ({ start: s.start, end: s.end, emotion: s.emotion, intensity: s.intensity, lock: s.lock, take: s.take })) };
  }

  // re-plan: the server plans every unlocked stretch again from the phrases' emotions, keeping the
  // locked sections exactly; the proposal replaces the edit here and is heard after a re-render
  async function replan() {
    $("ed-error").textContent = "";
    const r = await fetch(`${API}/jobs/${ed.id}/timeline/replan`, {
      method: "POST", headers: { ...ed.headers(), "Content-Type": "application/json" }, body: JSON.stringify(editBody()),
    });
    const answer = await r.json();
    if (!r.ok) { $("ed-error").textContent = `Not re-planned: ${answer.detail || r.statusText}`; return; }
    ed.sections = answer.sections.map((s) => ({ ...s }));
    render();
    const kept = ed.sections.filter((s) => s.lock).length;
    say(`Re-planned: ${ed.sections.length} sections, ${kept} locked kept as they were. Re-render to hear it.`);
  }

  async function rerender() {
    $("ed-error").textContent = "";
    $("ed-render").disabled = true;
    const body = editBody();
    const r = await fetch(`${API}/jobs/${ed.id}/timeline`, {
      method: "PUT", headers: { ...ed.headers(), "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const answer = await r.json();
    if (r.status !== 202) {
      $("ed-render").disabled = false;
      $("ed-error").textContent = `Not re-rendered: ${answer.detail || r.statusText}`;
      if (answer.section != null) { const n = document.querySelector(`#ed-sec-${answer.section} select`); if (n) n.focus(); }
      return;
    }
    say(`Rendering version ${answer.version}…`);
    $("ed-progress").hidden = false;
    const wait = async () => {
      const job = await (await fetch(`${API}/jobs/${ed.id}?original=true`, { headers: ed.headers() })).json();
      $("ed-progress").value = job.status === "done" ? 100 : job.progress;
      if (job.status === "done") {
        $("ed-progress").hidden = true;
        $("ed-render").disabled = false;
        await reload();
        say(`Version ${answer.version} is ready; the player plays it. Earlier versions stay below for A/B.`);
        ed.onVersion(job);
        return;
      }
      if (job.status === "failed" || job.status === "cancelled") {
        $("ed-render").disabled = false;
        $("ed-error").textContent = `The re-render ${job.status}: ${job.error ? job.error.message : ""}`;
        return;
      }
      setTimeout(wait, 700);
    };
    wait();
  }

  function renderVersions() {
    const list = $("ed-versions");
    list.innerHTML = "";
    const exp = $("ed-export");
    exp.hidden = !ed.data.export;
    if (ed.data.export) exp.href = ed.data.export + "&download=true";
    for (const v of ed.data.versions) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "ed-play";
      b.textContent = `Play version ${v.n}${v.current ? " (latest)" : ""}`;
      b.addEventListener("click", () => playVersion(v));
      li.appendChild(b);
      for (const [name, url] of Object.entries(v.files)) {
        if (!/(output\.mp4|bgm\.wav|timeline\.json)$/.test(name)) continue;
        const a = document.createElement("a");
        a.href = url + "&download=true";
        a.textContent = name;
        li.append(" ", a);
      }
      list.appendChild(li);
    }
  }

  function playVersion(v) {
    const player = $("player"), url = v.files[`v${v.n}/output.mp4`];
    if (!url) return;
    const t = player.currentTime, playing = !player.paused;
    player.src = url;
    player.dataset.version = String(v.n);
    player.addEventListener("loadedmetadata", function once() {
      player.removeEventListener("loadedmetadata", once);
      player.currentTime = t;
      if (playing) player.play();
    });
    say(`Now playing version ${v.n}.`);
  }

  $("ed-render").addEventListener("click", rerender);
  $("ed-replan").addEventListener("click", replan);
  window.moodbgmEditor = { open };
})();
