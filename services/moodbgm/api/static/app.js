// moodbgm web form: upload (with progress), follow the job(s), then play, compare and download.
(function () {
  "use strict";
  const API = "/api/v1";
  const config = JSON.parse(document.getElementById("config").textContent);
  const COLORS = config.colors;
  const STAGE_WORDS = {
    media: "Reading the video", separate: "Isolating the voice", stt: "Transcribing speech",
    emotion: "Reading the mood", timeline: "Planning the music", generate: "Composing music",
    mix: "Mixing", mux: "Writing the video", report: "Drawing the timeline",
  };
  const $ = (id) => document.getElementById(id);
  const form = $("upload-form"), fileInput = $("file"), drop = $("drop-zone"), submit = $("submit");
  const statusEl = $("status"), errorEl = $("error");
  let chosen = null, current = null, timeline = null, jobs = [], pollTimer = null;
  let batch = { id: null, picked: null }; // the variations' batch, and the one picked as the output

  // the API key: asked once, then kept in this browser (localStorage) and sent as a bearer header
  const KEY_STORE = "moodbgm.apiKey";
  if (config.needsKey) {
    try { $("api-key").value = localStorage.getItem(KEY_STORE) || ""; } catch (err) { /* storage off */ }
  }
  function headers() {
    const key = config.needsKey ? $("api-key").value.trim() : "";
    return key ? { Authorization: "Bearer " + key } : {};
  }
  function keepKey() {
    if (!config.needsKey) return;
    try { localStorage.setItem(KEY_STORE, $("api-key").value.trim()); } catch (err) { /* storage off */ }
  }
  function forgetKey() {
    if (!config.needsKey) return;
    try { localStorage.removeItem(KEY_STORE); } catch (err) { /* storage off */ }
    $("api-key").value = "";
  }
  function setError(msg) { errorEl.textContent = msg || ""; }
  function say(msg) { statusEl.textContent = msg; }

  // ---- choosing a file: click, keyboard, drag and drop
  function choose(file) {
    chosen = file || null;
    $("file-name").textContent = chosen ? `${chosen.name} (${(chosen.size / 1048576).toFixed(1)} MB)` : "No file chosen";
    submit.disabled = !chosen;
  }
  drop.addEventListener("click", () => fileInput.click());
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); }
  });
  fileInput.addEventListener("change", () => choose(fileInput.files[0]));
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => { if (e.dataTransfer.files.length) choose(e.dataTransfer.files[0]); });

  // ---- upload with progress
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!chosen) return;
    keepKey();
    setError("");
    $("result").hidden = true;
    $("progress-section").hidden = false;
    $("jobs").innerHTML = "";
    const data = new FormData();
    data.append("file", chosen, chosen.name);
    for (const name of ["generator", "style", "emotion", "seed", "variations"]) data.append(name, $(name).value);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", API + "/jobs");
    for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
    xhr.upload.addEventListener("progress", (ev) => {
      if (ev.lengthComputable) {
        const pct = Math.round((100 * ev.loaded) / ev.total);
        $("upload-progress").value = pct;
        say(`Uploading… ${pct}%`);
      }
    });
    xhr.addEventListener("load", () => {
      submit.disabled = false;
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = { detail: xhr.statusText }; }
      if (xhr.status === 401) forgetKey();
      if (xhr.status !== 202) { setError(`Upload refused: ${body.detail || xhr.status}`); say(""); return; }
      $("upload-progress").value = 100;
      say("Uploaded. Waiting for a worker…");
      if (body.jobs.length === 1) history.replaceState(null, "", "#job=" + body.jobs[0]);
      else history.replaceState(null, "", "#batch=" + body.batch_id);
      batch = { id: body.batch_id || null, picked: null };
      follow(body.jobs, body.seeds);
    });
    xhr.addEventListener("error", () => { submit.disabled = false; setError("Upload failed: the server could not be reached."); });
    submit.disabled = true;
    xhr.send(data);
  });

  // ---- live progress (polling)
  function follow(ids, seeds) {
    jobs = ids.map((id, i) => ({ id, seed: seeds[i], state: null }));
    const list = $("jobs");
    jobs.forEach((j, i) => {
      const li = document.createElement("li");
      const label = jobs.length > 1 ? `Variation ${i + 1} (seed ${j.seed})` : "Job";
      li.innerHTML = `<label for="p-${j.id}">${label}: <span id="s-${j.id}">queued</span></label>
        <progress id="p-${j.id}" max="100" value="0"></progress>`;
      list.appendChild(li);
    });
    clearTimeout(pollTimer);
    poll();
  }

  async function poll() {
    try {
      await Promise.all(jobs.map(async (j) => {
        if (j.state && ["done", "failed", "cancelled"].includes(j.state.status)) return;
        // original=true: the links include the original upload (the A/B switch plays it)
        const r = await fetch(`${API}/jobs/${j.id}?original=true`, { headers: headers() });
        const body = await r.json();
        if (!r.ok) throw new Error(body.detail || r.statusText);
        j.state = body;
        $("p-" + j.id).value = body.progress;
        $("s-" + j.id).textContent = describe(body);
      }));
    } catch (err) {
      say(`Could not read the progress (${err.message}); retrying…`);
    }
    const states = jobs.map((j) => j.state).filter(Boolean);
    const finished = states.filter((s) => ["done", "failed", "cancelled"].includes(s.status));
    if (states.length) {
      const pct = states.reduce((a, s) => a + s.progress, 0) / jobs.length;
      const running = states.find((s) => s.status === "running");
      say(finished.length === jobs.length ? "Finished." :
        `${running ? STAGE_WORDS[running.stage] || running.stage : "Queued"}… ${Math.round(pct)}%`);
    }
    // the emotion stage's note (e.g. speech it cannot read: the music stays neutral)
    const notes = [...new Set(states.map((s) => s.emotion_warning).filter(Boolean))];
    $("emotion-note").textContent = notes.length ? "Note: " + notes.join("; ") : "";
    $("emotion-note").hidden = !notes.length;
    const failed = states.filter((s) => s.status === "failed");
    if (failed.length) setError(failed.map((s) => s.error ? s.error.message : "failed").join("; "));
    if (finished.length === jobs.length) {
      const done = jobs.filter((j) => j.state.status === "done");
      if (done.length) showResult(done);
      return;
    }
    pollTimer = setTimeout(poll, 1000);
  }

  function describe(s) {
    if (s.status === "running") return `${STAGE_WORDS[s.stage] || s.stage} (${Math.round(s.progress)}%)`;
    if (s.status === "failed") return "failed: " + (s.error ? s.error.message : "");
    return s.status;
  }

  // ---- result
  function fileUrl(state, name) {
    const f = state.files.find((x) => x.name === name);
    return f ? f.url : null;
  }

  // variations side by side: one player each and a button that picks it as the output
  // (POST /batches/{id}/pick); the picked one plays in the main player and opens in the editor
  function showResult(done) {
    const list = $("variation-list");
    list.innerHTML = "";
    $("variations-section").hidden = done.length < 2;
    if (done.length > 1) {
      const picked = done.find((j) => j.id === batch.picked) || done[0];
      done.forEach((j) => {
        const n = jobs.indexOf(j) + 1;
        const li = document.createElement("li");
        li.className = "variation";
        const title = document.createElement("h4");
        title.id = `var-title-${j.id}`;
        title.textContent = `Variation ${n} (seed ${j.state.options.seed})`;
        const video = document.createElement("video");
        video.controls = true;
        video.preload = "metadata";
        video.src = fileUrl(j.state, "output.mp4");
        video.setAttribute("aria-labelledby", title.id);
        const b = document.createElement("button");
        b.type = "button";
        b.className = "pick";
        b.dataset.job = j.id;
        b.textContent = `Use variation ${n} as the output`;
        b.addEventListener("click", () => pick(j, b));
        li.append(title, video, b);
        list.appendChild(li);
      });
      select(picked, list.querySelector(`button[data-job="${picked.id}"]`));
    } else {
      select(done[0], null);
    }
    $("result").hidden = false;
  }

  async function pick(job, button) {
    setError("");
    if (batch.id) {
      const r = await fetch(`${API}/batches/${batch.id}/pick`, {
        method: "POST", headers: { ...headers(), "Content-Type": "application/json" }, body: JSON.stringify({ job: job.id }),
      });
      const body = await r.json();
      if (!r.ok) { setError(`Not picked: ${body.detail || r.statusText}`); return; }
      batch.picked = body.picked;
    }
    select(job, button);
    say(`${button.textContent.replace("Use v", "V").replace(" as the output", "")} is the output; the player and the editor use it.`);
  }

  function select(job, button) {
    for (const b of $("variation-list").querySelectorAll("button.pick")) {
      b.setAttribute("aria-pressed", String(b === button));
      b.closest("li").classList.toggle("picked", b === button);
    }
    current = job.state;
    const player = $("player");
    const t = player.currentTime || 0;
    player.src = fileUrl(current, "output.mp4");
    player.currentTime = t;
    setAB(false);
    renderDownloads(current);
    const png = fileUrl(current, "timeline.png");
    $("timeline-png").hidden = !png;
    if (png) $("timeline-png").src = png;
    loadJson(current, "timeline.json").then((tl) => { timeline = tl; drawChart(); });
    loadJson(current, "emotions.json").then(renderTranscript);
    if (window.moodbgmEditor) window.moodbgmEditor.open(current.id, headers, COLORS, newVersion);
  }

  // the editor re-rendered: the player swaps to the new version (the editor lists the older ones)
  function newVersion(state) {
    const job = jobs.find((j) => j.id === state.id);
    if (job) job.state = state;
    current = state;
    setAB(false);
    const player = $("player"), t = player.currentTime || 0;
    player.src = fileUrl(current, "output.mp4") + "&v=" + Date.now(); // a fresh load of the new version
    player.dataset.version = "latest";
    player.currentTime = t;
    renderDownloads(current);
    loadJson(current, "timeline.json").then((tl) => { timeline = tl; drawChart(); });
  }

  // open a job by its id: /#job=<id>, or a batch of variations: /#batch=<id> (bookmarkable)
  const opened = /job=([0-9a-f]{32})/.exec(location.hash);
  const openedBatch = /batch=([0-9a-f]{32})/.exec(location.hash);
  if (opened) {
    $("progress-section").hidden = false;
    follow([opened[1]], [null]);
  } else if (openedBatch) {
    $("progress-section").hidden = false;
    fetch(`${API}/batches/${openedBatch[1]}`, { headers: headers() }).then((r) => r.json()).then((b) => {
      if (!b.jobs) { setError(`Could not open the batch: ${b.detail || "unknown"}`); return; }
      batch = { id: b.id, picked: b.picked };
      follow(b.jobs.map((j) => j.id), b.jobs.map((j) => j.options.seed));
    });
  }

  async function loadJson(state, name) {
    const url = fileUrl(state, name);
    if (!url) return null;
    const r = await fetch(url, { headers: headers() });
    return r.ok ? r.json() : null;
  }

  // A/B: swap the player between the new soundtrack and the original, at the same moment
  function setAB(original) {
    const player = $("player"), btn = $("ab-toggle");
    btn.setAttribute("aria-pressed", String(original));
    $("ab-label").textContent = original ? "Now: original sound" : "Now: new soundtrack";
    if (!current) return;
    const want = fileUrl(current, original ? "input" : "output.mp4");
    if (!want || player.getAttribute("src") === want) return;
    const t = player.currentTime, playing = !player.paused;
    player.src = want;
    player.addEventListener("loadedmetadata", function once() {
      player.removeEventListener("loadedmetadata", once);
      player.currentTime = t;
      if (playing) player.play();
    });
  }
  $("ab-toggle").addEventListener("click", () => setAB($("ab-toggle").getAttribute("aria-pressed") !== "true"));

  // ---- emotion timeline chart (canvas) with a playhead; click to seek
  function drawChart() {
    const canvas = $("timeline-chart"), ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!timeline) return;
    const W = canvas.width, H = canvas.height, dur = timeline.duration || 1;
    const words = [];
    for (const s of timeline.sections) {
      const x0 = (s.start / dur) * W, x1 = (s.end / dur) * W;
      ctx.globalAlpha = 0.35 + 0.65 * (s.confidence == null ? 1 : s.confidence);
      ctx.fillStyle = COLORS[s.emotion] || "#999";
      ctx.fillRect(x0, 0, x1 - x0, H - 18);
      ctx.globalAlpha = 1;
      ctx.fillStyle = "#000";
      ctx.font = "12px system-ui, sans-serif";
      if (x1 - x0 > 50) ctx.fillText(s.emotion, x0 + 4, 16);
      words.push(`${s.emotion} from ${s.start.toFixed(1)} to ${s.end.toFixed(1)} s`);
    }
    ctx.fillStyle = "#555";
    for (const c of timeline.cuts || []) ctx.fillRect((c / dur) * W, H - 18, 1, 18);
    const t = $("player").currentTime || 0;
    ctx.fillStyle = "#000";
    ctx.fillRect((t / dur) * W - 1, 0, 2, H);
    canvas.setAttribute("aria-label", "Emotion timeline: " + words.join("; "));
    const legend = $("legend");
    if (!legend.children.length) {
      for (const [e, c] of Object.entries(COLORS)) {
        const li = document.createElement("li");
        li.innerHTML = `<span class="swatch" style="background:${c}"></span>${e}`;
        legend.appendChild(li);
      }
    }
  }
  $("player").addEventListener("timeupdate", drawChart);
  $("timeline-chart").addEventListener("click", (e) => {
    if (!timeline) return;
    const r = e.target.getBoundingClientRect();
    $("player").currentTime = ((e.clientX - r.left) / r.width) * timeline.duration;
  });

  function renderTranscript(emotions) {
    const box = $("transcript");
    box.innerHTML = "";
    const phrases = (emotions && emotions.phrases) || [];
    if (!phrases.length) { box.textContent = "No speech was found."; return; }
    for (const p of phrases) {
      const para = document.createElement("p");
      para.style.borderColor = COLORS[p.label] || "#999";
      para.style.background = (COLORS[p.label] || "#999999") + "22";
      const time = document.createElement("a");
      time.href = "#player";
      time.textContent = `[${p.start.toFixed(1)}s]`;
      time.addEventListener("click", (e) => { e.preventDefault(); $("player").currentTime = p.start; $("player").focus(); });
      para.append(time, " " + p.text);
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = `${p.label} ${Math.round(100 * (p.confidence || 0))}%`;
      para.appendChild(label);
      box.appendChild(para);
    }
  }

  function renderDownloads(state) {
    const list = $("downloads");
    list.innerHTML = "";
    const wanted = ["output.mp4", "mix.wav", "bgm.wav", "bgm.mid", "timeline.json", "emotions.json", "transcript.json", "timeline.png"];
    for (const f of state.files.filter((x) => wanted.includes(x.name))) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = f.url + (f.url.includes("?") ? "&" : "?") + "download=true";
      a.textContent = `${f.name} (${(f.size / 1024).toFixed(0)} KB)`;
      a.setAttribute("download", f.name);
      li.appendChild(a);
      list.appendChild(li);
    }
  }
})();
