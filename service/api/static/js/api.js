// The public HTTP API, as any client calls it. EventSource cannot send an Authorization header,
// so event streams are read with fetch() and parsed here.

const KEY_NAME = "tta-api-key";

export function loadKey() {
  return sessionStorage.getItem(KEY_NAME) ?? localStorage.getItem(KEY_NAME) ?? "";
}

export function saveKey(key, remember) {
  sessionStorage.removeItem(KEY_NAME);
  localStorage.removeItem(KEY_NAME);
  if (key) (remember ? localStorage : sessionStorage).setItem(KEY_NAME, key);
}

/** An error answer of the API: {code, message, field} with its HTTP status. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body.code ?? "http_error";
    this.field = body.field ?? null;
  }
}

function headers(extra = {}) {
  const key = loadKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function check(response) {
  if (response.ok) return response;
  let body = {};
  try { body = await response.json(); } catch { body = { message: `HTTP ${response.status} ${response.statusText}` }; }
  throw new ApiError(response.status, body);
}

export async function getJSON(path) {
  return (await check(await fetch(path, { headers: headers() }))).json();
}

export async function postJSON(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
  });
  return (await check(response)).json();
}

/** Server-sent events from a text stream: yields {id, event, data} as blocks complete. */
export async function* parseSSE(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { id: null, event: "message", data: [] };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;  // comments are keep-alive pings
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "id") event.id = value;
        else if (name === "event") event.event = value;
        else if (name === "data") event.data.push(value);
      }
      if (event.data.length) yield { id: event.id, event: event.event, data: JSON.parse(event.data.join("\n")) };
    }
  }
}

function isTerminal(event) {
  return event.event === "error" || (event.event === "result" && event.data.final);
}

/** Follow a job's events until its last one; a dropped stream resumes after the last event id. */
export async function followJob(eventsUrl, onEvent, { retries = 3 } = {}) {
  let lastId = null;
  for (let attempt = 0; attempt <= retries; attempt++) {
    const response = await check(await fetch(eventsUrl, {
      headers: headers({ Accept: "text/event-stream", ...(lastId ? { "Last-Event-ID": lastId } : {}) }),
    }));
    if (response.status === 204) return;  // nothing left after lastId: the job had finished
    try {
      for await (const event of parseSSE(response.body.getReader())) {
        lastId = event.id ?? lastId;
        onEvent(event);
        if (isTerminal(event)) return;
      }
    } catch (error) {
      if (error instanceof SyntaxError) throw error;  // a malformed event is not a network drop
    }
    await new Promise((resolve) => setTimeout(resolve, 500 * (attempt + 1)));
  }
  throw new ApiError(0, { code: "stream_lost", message: "the event stream closed before the job's last event" });
}
