// The phone upload page's script (docs/upload-page.md). The page works without it (one photo per plain form
// post); with it, photos go through the public upload API, up to three at a time, each with its own progress,
// and their delivery is shown live from the session's event stream.
(() => {
  "use strict";

  const configNode = document.getElementById("upload-config");
  if (!configNode) return;
  const config = JSON.parse(configNode.textContent);
  const words = config.words;
  const SESSION_CODES = new Set(["SESSION_EXPIRED", "SESSION_CLOSED", "NOT_FOUND"]);
  const PASSWORD_CODES = new Set(["PASSWORD_REQUIRED", "INVALID_PASSWORD"]);
  // A refusal worth sending the same photo again for, by itself, after a pause (at most AUTO_RETRIES times).
  const TRANSIENT_STATUSES = new Set([408, 429, 500, 502, 503, 504]);
  const AUTO_RETRIES = 3;
  const STALL_MILLISECONDS = 30000; // an upload with no progress this long is taken as a lost connection
  // Once every byte is sent, the answer may take a while (the server decodes the photo); longer than this, and the
  // connection is taken as lost.
  const ANSWER_MILLISECONDS = 90000;
  // A photo whose bytes all went out before the connection dropped may have been taken: its arrival is awaited on
  // the event stream this long before it is sent again.
  const ARRIVAL_MILLISECONDS = 30000;
  const JPEG_QUALITY = 0.9;

  function say(key, values) {
    let text = words[key] || words.UNKNOWN;
    for (const [name, value] of Object.entries(values || {})) text = text.split(`{${name}}`).join(String(value));
    return text;
  }

  function waitInWords(seconds) {
    if (seconds < 60) return say(seconds === 1 ? "waitSecond" : "waitSeconds", { n: seconds });
    const minutes = Math.ceil(seconds / 60);
    return say(minutes === 1 ? "waitMinute" : "waitMinutes", { n: minutes });
  }

  function refusalInWords(code, retryAfter) {
    return say(code, { wait: waitInWords(retryAfter || 60) });
  }

  // The parent window, when the page is embedded in an iframe (docs/upload-page.md "Embedding").
  function tell(type, data) {
    if (window.parent !== window) window.parent.postMessage({ type, data }, "*");
  }

  // --- the password gate -------------------------------------------------------------------------------
  const gate = document.getElementById("password-form");
  const gateKey = `apertur:verified:${config.sessionId}`;
  if (gate) {
    let verifiedAt = null;
    try {
      verifiedAt = Number(sessionStorage.getItem(gateKey));
      sessionStorage.removeItem(gateKey);
    } catch (error) {
      verifiedAt = null;
    }
    if (verifiedAt && Date.now() - verifiedAt < 15000 && window.parent !== window) {
      const notice = document.getElementById("password-error");
      notice.textContent = say("cookieBlocked");
      notice.hidden = false;
      const link = document.createElement("a");
      link.href = window.location.href;
      link.target = "_blank";
      link.rel = "noopener";
      link.className = "button button-primary";
      link.textContent = say("openAlone");
      gate.after(link);
    }
    // Through the API rather than the form: in an iframe the form's CSRF cookie may not be sent.
    gate.addEventListener("submit", async (event) => {
      event.preventDefault();
      const notice = document.getElementById("password-error");
      const button = gate.querySelector("button");
      button.disabled = true;
      try {
        const response = await fetch(config.urls.verifyPassword, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ password: gate.elements.password.value }),
        });
        const body = await response.json().catch(() => ({}));
        if (response.ok && body.valid) {
          // Remembered for one reload: if the gate comes back at once, the browser refused the cookie (an
          // embedded page whose browser blocks third-party cookies).
          try {
            sessionStorage.setItem(gateKey, String(Date.now()));
          } catch (error) {
            /* storage refused too: nothing to remember with */
          }
          window.location.reload();
          return;
        }
        const code = response.ok ? "INVALID_PASSWORD" : body.code;
        notice.textContent = refusalInWords(code, Number(response.headers.get("Retry-After")));
      } catch (error) {
        notice.textContent = say("gateNetwork");
      }
      notice.hidden = false;
      button.disabled = false;
      gate.elements.password.focus();
    });
    return;
  }

  // --- the upload page ----------------------------------------------------------------------------------
  const pickers = document.getElementById("pickers");
  const plainForm = document.getElementById("plain-form");
  const list = document.getElementById("files");
  const counter = document.getElementById("counter");
  const notice = document.getElementById("page-notice");
  const doneForm = document.getElementById("done-form");
  const doneButton = document.getElementById("done-button");
  const heading = document.getElementById("heading");
  const announcer = document.getElementById("announcer");
  const hint = document.querySelector(".hint");
  const items = [];
  const readyByImage = new Map(); // imageId → image:ready data, for photos this page did not (knowingly) send
  const deliveries = new Map(); // imageId → {delivered: Set, failed: Map(destinationId → final)}
  let imagesCount = config.imagesCount;
  let active = 0;
  let finished = false;
  let stream = null;
  let streamDead = false; // the event stream is closed for good: deliveries can no longer be followed
  let preparing = Promise.resolve(); // photos are prepared one at a time: each decode takes tens of MB

  pickers.hidden = false;
  if (plainForm) plainForm.hidden = true;

  for (const [inputId, source] of [["camera-input", "camera"], ["gallery-input", "gallery"]]) {
    const input = document.getElementById(inputId);
    input.addEventListener("change", () => {
      addFiles(Array.from(input.files), source);
      input.value = "";
    });
  }

  function showCounter() {
    counter.textContent = say(imagesCount > 1 ? "counterN" : `counter${imagesCount}`, {
      count: imagesCount,
      max: config.maxImages,
    });
    refreshDone();
  }

  // One polite announcement per state change (not per progress step) for screen readers.
  function announce(item, text) {
    announcer.textContent = `${item.name}: ${text}`;
  }

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = !text;
  }

  function pending() {
    return items.filter((item) => ["queued", "preparing", "uploading", "processing", "offline"].includes(item.state));
  }

  function addFiles(files, source) {
    for (const file of files) {
      const item = { file, source, name: file.name || "photo.jpg", state: "queued", attempts: 0, imageId: null };
      item.element = renderItem(item);
      items.push(item);
      list.append(item.element);
      if (imagesCount + pending().length > config.maxImages) {
        refuse(item, "SESSION_FULL", { retry: true });
      } else {
        setState(item, "queued");
      }
    }
    pump();
  }

  function pump() {
    while (active < config.maxParallelUploads) {
      const next = items.find((item) => item.state === "queued");
      if (!next) break;
      start(next);
    }
    refreshDone();
  }

  // --- one photo's row --------------------------------------------------------------------------------
  function renderItem(item) {
    const row = document.createElement("li");
    row.className = "file";
    const thumb = document.createElement("img");
    thumb.className = "thumb";
    thumb.alt = "";
    thumb.width = 56;
    thumb.height = 56;
    thumb.addEventListener("error", () => thumb.classList.add("thumb-missing"));
    item.thumbUrl = URL.createObjectURL(item.file);
    thumb.src = item.thumbUrl;
    const body = document.createElement("div");
    body.className = "file-body";
    const name = document.createElement("p");
    name.className = "file-name";
    name.textContent = item.name;
    const progress = document.createElement("progress");
    progress.max = 100;
    progress.value = 0;
    progress.setAttribute("aria-label", item.name);
    const state = document.createElement("p");
    state.className = "file-state";
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "button button-small";
    retry.hidden = true;
    retry.addEventListener("click", () => {
      if (item.retryable) {
        item.attempts = 0;
        setState(item, "queued");
        pump();
      } else {
        row.remove();
        URL.revokeObjectURL(item.thumbUrl);
        items.splice(items.indexOf(item), 1);
        refreshDone();
      }
    });
    body.append(name, progress, state);
    row.append(thumb, body, retry);
    Object.assign(item, { thumb, progress, stateText: state, retryButton: retry });
    return row;
  }

  function setState(item, state, text, percent) {
    const changed = item.state !== state;
    item.state = state;
    item.element.dataset.state = state;
    const wordsKey = { queued: "queued", preparing: "preparing", processing: "processing" }[state];
    item.stateText.textContent = text || (wordsKey ? say(wordsKey) : "");
    if (state === "error") item.progress.value = 0;
    if (changed && state !== "uploading") announce(item, item.stateText.textContent);
    if (percent !== undefined) item.progress.value = percent;
    if (["received", "delivering", "sent", "delivery-retrying", "delivery-failed"].includes(state)) {
      item.progress.value = 100;
    }
    item.retryButton.hidden = state !== "error";
    refreshDone();
  }

  // Done completes the session: only once something was received (a session completed empty is a dead link).
  function refreshDone() {
    doneButton.disabled = finished || imagesCount === 0;
  }

  async function start(item) {
    active += 1;
    item.attempts += 1;
    setState(item, "preparing");
    try {
      if (!item.blob) {
        const ready = preparing.then(() => prepared(item.file));
        preparing = ready.catch(() => undefined);
        item.blob = await ready;
        if (item.blob !== item.file) {
          // Show the small prepared photo rather than decoding the full-size one for a thumbnail.
          URL.revokeObjectURL(item.thumbUrl);
          item.thumbUrl = URL.createObjectURL(item.blob);
          item.thumb.src = item.thumbUrl;
        }
      }
      if (item.blob.size > config.maxImageSizeBytes) {
        refuse(item, "FILE_TOO_LARGE");
      } else {
        await send(item);
      }
    } catch (error) {
      refuse(item, error.code || "UNKNOWN");
    } finally {
      active -= 1;
      pump();
    }
  }

  // --- downscaling and conversion (docs/upload-page.md "Photos are made to fit") -------------------------
  function typeOf(file) {
    if (file.type) return file.type === "image/heif" ? "image/heic" : file.type;
    const extension = (file.name.split(".").pop() || "").toLowerCase();
    return { jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", webp: "image/webp", heic: "image/heic", heif: "image/heic" }[extension] || "";
  }

  async function prepared(file) {
    const type = typeOf(file);
    const allowed = config.allowedMimeTypes;
    const typeAllowed = !type || allowed.includes(type);
    // Only an iPhone's HEIC is converted for a session that does not take it (docs/upload-page.md); any other type
    // the session does not take is refused as the server would, with the accepted types named.
    if (!typeAllowed && type !== "image/heic") throw { code: "UNSUPPORTED_MEDIA_TYPE" };
    const maxDimension = config.maxImageDimension;
    if (typeAllowed && !maxDimension) return file;
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch (error) {
      // The browser cannot decode it (HEIC outside Safari, a file that is no image): the server decides.
      if (typeAllowed) return file;
      throw { code: type === "image/heic" ? "heicNotAccepted" : "UNSUPPORTED_MEDIA_TYPE" };
    }
    const longest = Math.max(bitmap.width, bitmap.height);
    const scale = maxDimension && longest > maxDimension ? maxDimension / longest : 1;
    if (scale === 1 && typeAllowed) {
      bitmap.close();
      return file; // the original bytes, untouched
    }
    let outType = typeAllowed && ["image/png", "image/webp"].includes(type) ? type : "image/jpeg";
    if (!allowed.includes(outType)) outType = allowed.find((candidate) => candidate !== "image/heic");
    if (!outType) {
      bitmap.close();
      throw { code: "UNSUPPORTED_MEDIA_TYPE" };
    }
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, outType, JPEG_QUALITY));
    if (!blob) throw { code: "UNKNOWN" };
    const extension = { "image/jpeg": "jpg", "image/png": "png", "image/webp": "webp" }[outType];
    const stem = file.name ? file.name.replace(/\.[^.]*$/, "") : "photo";
    return new File([blob], `${stem}.${extension}`, { type: outType });
  }

  // --- sending -------------------------------------------------------------------------------------------
  function send(item) {
    return new Promise((resolve) => {
      const form = new FormData();
      form.append("source", item.source);
      form.append("file", item.blob, item.blob.name || item.name);
      const request = new XMLHttpRequest();
      let stallTimer = null;
      const stalled = () => {
        clearTimeout(stallTimer);
        stallTimer = setTimeout(() => request.abort(), STALL_MILLISECONDS);
      };
      request.open("POST", config.urls.images);
      request.setRequestHeader("Accept", "application/json");
      request.upload.addEventListener("progress", (event) => {
        stalled();
        if (event.lengthComputable) {
          const percent = Math.round((event.loaded / event.total) * 100);
          setState(item, "uploading", say("uploading", { percent }), percent);
        }
      });
      request.upload.addEventListener("load", () => {
        item.bodySent = true;
        clearTimeout(stallTimer);
        stallTimer = setTimeout(() => request.abort(), ANSWER_MILLISECONDS);
        setState(item, "processing", null, 100);
      });
      request.addEventListener("load", () => {
        clearTimeout(stallTimer);
        let body = {};
        try {
          body = JSON.parse(request.responseText);
        } catch (error) {
          body = {};
        }
        if (request.status === 201) {
          accepted(item, body);
        } else {
          refused(item, request.status, body, Number(request.getResponseHeader("Retry-After")));
        }
        resolve();
      });
      for (const failure of ["error", "abort", "timeout"]) {
        request.addEventListener(failure, () => {
          clearTimeout(stallTimer);
          connectionLost(item).then(resolve);
        });
      }
      item.bodySent = false;
      setState(item, "uploading", say("uploading", { percent: 0 }), 0);
      stalled();
      request.send(form);
    });
  }

  function accepted(item, body) {
    item.imageId = body.id;
    item.destinations = body.destinations ?? config.destinationsCount;
    readyByImage.delete(body.id);
    imagesCount = Math.max(imagesCount, (body.image_index || 0) + 1);
    showCounter();
    tell("apertur:image:received", {
      sessionId: config.sessionId,
      imageId: body.id,
      imageIndex: body.image_index,
      filename: body.filename,
      mimeType: body.mime_type,
      sizeBytes: body.size_bytes,
    });
    showDelivery(item);
    if (imagesCount >= config.maxImages && pending().length === 0) finish(false);
  }

  function refused(item, status, body, retryAfter) {
    const code = body.code || (status >= 500 ? "SERVER_BUSY" : "UNKNOWN");
    if (SESSION_CODES.has(code)) {
      refuse(item, code);
      sessionEnded(code);
      return;
    }
    if (PASSWORD_CODES.has(code)) {
      window.location.reload(); // the password changed or the cookie is gone: the gate asks again
      return;
    }
    if (TRANSIENT_STATUSES.has(status) && item.attempts < AUTO_RETRIES) {
      const seconds = retryAfter || 2 ** item.attempts;
      setState(item, "offline", refusalInWords(code, seconds));
      setTimeout(() => {
        setState(item, "queued");
        pump();
      }, seconds * 1000);
      return;
    }
    refuse(item, code, { retry: TRANSIENT_STATUSES.has(status) || code === "SESSION_FULL", retryAfter });
  }

  function refuse(item, code, options) {
    const { retry = false, retryAfter = 0 } = options || {};
    item.retryable = retry;
    item.retryButton.textContent = say(retry ? "retry" : "remove");
    item.retryButton.setAttribute("aria-label", say(retry ? "retryPhoto" : "removePhoto", { name: item.name }));
    setState(item, "error", refusalInWords(code, retryAfter));
    item.element.classList.add("file-error");
    tell("apertur:error", { sessionId: config.sessionId, code, message: item.stateText.textContent, filename: item.name });
  }

  // The connection dropped mid-upload: the server may still have taken the photo (its answer was lost), so
  // before sending it again the page looks for it among the photos the event stream says arrived.
  async function connectionLost(item) {
    setState(item, "offline", say("offline"));
    if (!navigator.onLine) await new Promise((resolve) => window.addEventListener("online", resolve, { once: true }));
    await streamCaughtUp();
    const arrived = () =>
      [...readyByImage.values()].find(
        (ready) => ready.sizeBytes === item.blob.size && ready.filename === (item.blob.name || item.name),
      );
    // Every byte went out: the server may still be checking the photo. Its arrival is awaited a while (the
    // stream tells it) before sending it again; a photo cut mid-way cannot have been taken.
    for (let waited = 0; item.bodySent && !arrived() && !streamDead && waited < ARRIVAL_MILLISECONDS; waited += 250) {
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const match = arrived();
    if (match) {
      accepted(item, { id: match.imageId, image_index: match.imageIndex, filename: match.filename });
      return;
    }
    if (item.attempts >= AUTO_RETRIES + 2) {
      refuse(item, "NETWORK", { retry: true });
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000 * item.attempts));
    setState(item, "queued");
  }

  // --- delivery, live from the event stream (docs/api.md "Server-Sent Events") -----------------------------
  function deliveryOf(imageId) {
    if (!deliveries.has(imageId)) deliveries.set(imageId, { delivered: new Set(), failed: new Map() });
    return deliveries.get(imageId);
  }

  function showDelivery(item) {
    if (!item.imageId) return;
    const delivery = deliveryOf(item.imageId);
    if (!item.destinations || (streamDead && delivery.delivered.size < item.destinations)) {
      setState(item, "received", say("received")); // nothing to follow, or no way left to follow it
    } else if (delivery.delivered.size >= item.destinations) {
      setState(item, "sent", say("sent"));
    } else if ([...delivery.failed.values()].some((final) => final)) {
      setState(item, "delivery-failed", say("deliveryFailed"));
    } else if (delivery.failed.size) {
      setState(item, "delivery-retrying", say("deliveryRetrying"));
    } else {
      setState(item, "delivering", say("delivering"));
    }
  }

  function onDeliveryEvent(imageId) {
    const item = items.find((candidate) => candidate.imageId === imageId);
    if (item) showDelivery(item);
  }

  let lastStreamMessage = 0;
  function openStream() {
    if (!window.EventSource) {
      streamDead = true;
      return;
    }
    stream = new EventSource(config.urls.events);
    // The browser reconnects by itself after a network error; CLOSED means the server refused the stream (the
    // password changed, the events service is down): rows then say "Received" rather than wait forever.
    stream.addEventListener("error", () => {
      if (stream.readyState !== EventSource.CLOSED || finished) return;
      streamDead = true;
      for (const item of items) if (item.imageId) showDelivery(item);
    });
    const on = (name, handle) =>
      stream.addEventListener(name, (event) => {
        lastStreamMessage = Date.now();
        handle(JSON.parse(event.data));
      });
    on("image:ready", (data) => {
      imagesCount = Math.max(imagesCount, data.imageIndex + 1);
      showCounter();
      if (!items.some((item) => item.imageId === data.imageId)) readyByImage.set(data.imageId, data);
    });
    on("image:delivered", (data) => {
      const delivery = deliveryOf(data.imageId);
      delivery.delivered.add(data.destinationId);
      delivery.failed.delete(data.destinationId);
      onDeliveryEvent(data.imageId);
    });
    on("image:failed", (data) => {
      deliveryOf(data.imageId).failed.set(data.destinationId, data.final);
      onDeliveryEvent(data.imageId);
    });
    on("session:completed", (data) => {
      if (data.status === "expired" && !finished) sessionEnded("SESSION_EXPIRED");
      stream.close(); // the session ended: nothing more will happen
    });
  }

  // Resolves once the stream is open and has been quiet for a moment: a reconnected EventSource first replays
  // what it missed (Last-Event-ID), so by then every photo that arrived meanwhile is known.
  async function streamCaughtUp() {
    if (!stream || stream.readyState === EventSource.CLOSED) return;
    for (let waited = 0; waited < 15000; waited += 250) {
      if (stream.readyState === EventSource.OPEN && Date.now() - lastStreamMessage > 750) return;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  // --- the end --------------------------------------------------------------------------------------------
  function sessionEnded(code) {
    finished = true;
    pickers.hidden = true;
    doneForm.hidden = true;
    if (hint) hint.hidden = true;
    showNotice(refusalInWords(code));
    for (const item of items) if (item.state === "queued") refuse(item, code);
  }

  function finish(byDone) {
    finished = true;
    pickers.hidden = true;
    doneForm.hidden = true;
    if (hint) hint.hidden = true;
    refreshDone();
    // Nothing can be sent any more: a refused photo can only be removed from the list.
    for (const item of items) {
      if (item.state === "error" && item.retryable) {
        item.retryable = false;
        item.retryButton.textContent = say("remove");
        item.retryButton.setAttribute("aria-label", say("removePhoto", { name: item.name }));
      }
    }
    heading.textContent = words.thanksHeading;
    showNotice(say(imagesCount === 1 ? "thanksOne" : "thanksMany", { count: imagesCount }));
    notice.classList.add("notice-ok");
    notice.classList.remove("notice-error");
    tell("apertur:session:complete", { sessionId: config.sessionId, imagesCount, byDone });
  }

  doneForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (pending().length) {
      showNotice(say("waitForUploads"));
      return;
    }
    doneButton.disabled = true;
    doneButton.textContent = say("finishing");
    try {
      const response = await fetch(config.urls.complete, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: "{}",
      });
      const body = await response.json().catch(() => ({}));
      if (response.ok) {
        finish(true);
      } else if (SESSION_CODES.has(body.code)) {
        sessionEnded(body.code);
      } else if (PASSWORD_CODES.has(body.code)) {
        window.location.reload();
      } else {
        showNotice(refusalInWords(body.code || "UNKNOWN", Number(response.headers.get("Retry-After"))));
      }
    } catch (error) {
      showNotice(say("doneFailed"));
    }
    doneButton.textContent = words.done;
    refreshDone();
  });

  showCounter();
  openStream();
})();
