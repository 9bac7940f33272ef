// The catalog page: reads the documents view as a single-page app reads a bucket (list, then fetch each
// document), with nothing but fetch(). It never writes: writes go through the write service, into the log.
"use strict";

const VIEW = "movies";
const SHOWN_MAX = 30;
const REFRESH_MS = 1000;
const cache = new Map();  // document name -> {modified, doc}: unchanged documents are not fetched again

function docUrl(name) {
  return `/docs/${VIEW}/current/${encodeURIComponent(name)}`;
}

function describe(doc) {
  const v = doc.value || {};
  const parts = [v.year, (v.genres || []).join(", "), v.rating !== undefined ? `rated ${v.rating}` : ""];
  return parts.filter((p) => p !== undefined && p !== "").join(" · ");
}

function card(doc) {
  const li = document.createElement("li");
  li.dataset.key = doc.key;
  const title = document.createElement("strong");
  title.textContent = (doc.value && doc.value.title) || doc.key;
  const id = document.createElement("code");
  id.textContent = doc.key;
  const about = document.createElement("span");
  about.textContent = describe(doc);
  li.append(title, " ", id, " ", about);
  return li;
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const r = await fetch(`/docs/${VIEW}/current/?limit=${SHOWN_MAX}`);
    if (!r.ok) throw new Error(`listing answered ${r.status}`);
    const items = (await r.json()).items;
    const docs = [];
    for (const item of items) {
      let hit = cache.get(item.name);
      if (!hit || hit.modified !== item.modified_ms) {
        const d = await fetch(docUrl(item.name));
        if (!d.ok) continue;  // deleted between the listing and the fetch
        hit = {modified: item.modified_ms, doc: await d.json()};
        cache.set(item.name, hit);
      }
      docs.push(hit.doc);
    }
    document.getElementById("movies").replaceChildren(...docs.map(card));
    status.textContent = `${docs.length} most recently changed movies, read at ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    status.textContent = `cannot read the documents: ${e.message}`;
  }
}

document.getElementById("lookup").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = document.getElementById("key").value.trim();
  const out = document.getElementById("found");
  const r = await fetch(docUrl(`${key}.json`));
  out.textContent = r.ok ? JSON.stringify((await r.json()).value) : `no movie ${key}`;
});

refresh();
setInterval(refresh, REFRESH_MS);
