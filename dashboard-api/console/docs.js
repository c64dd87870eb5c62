// Renders the OpenAPI document as a browsable page: operations by tag, their parameters,
// request bodies and responses, with schemas expandable. No external assets.
"use strict";
(async () => {
  const root = document.getElementById("docs");
  const doc = await (await fetch("/api/v1/openapi.json")).json();
  const el = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) k === "text" ? (e.textContent = v) : e.setAttribute(k, v);
    for (const k of kids) if (k) e.append(k);
    return e;
  };
  const schemaText = (s) => JSON.stringify(s, null, 2);
  root.textContent = "";
  root.append(el("h1", { text: `${doc.info.title} API ${doc.info.version}` }),
    el("p", { text: doc.info.description || "" }),
    el("p", {}, el("a", { href: "/api/v1/openapi.json", text: "openapi.json" }), " · ",
      el("a", { href: "/console/", text: "console" })));
  const byTag = {};
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const tag = (op.tags || ["other"])[0];
      (byTag[tag] ||= []).push({ path, method, op });
    }
  }
  for (const t of doc.tags || Object.keys(byTag).map((name) => ({ name }))) {
    const list = byTag[t.name];
    if (!list) continue;
    const sec = el("section", { class: "tag" }, el("h2", { text: t.name }), el("p", { text: t.description || "" }));
    for (const { path, method, op } of list) {
      const d = el("details", { class: "op" });
      d.append(el("summary", {}, el("span", { class: `m ${method}`, text: method.toUpperCase() }), el("code", { text: path }), " ", op.summary || ""));
      if (op.description) d.append(el("p", { text: op.description }));
      if (op.parameters?.length) {
        const tb = el("table", {}, el("tr", {}, el("th", { text: "parameter" }), el("th", { text: "in" }), el("th", { text: "description" })));
        for (const p of op.parameters) tb.append(el("tr", {}, el("td", {}, el("code", { text: p.name + (p.required ? " *" : "") })), el("td", { text: p.in }), el("td", { text: p.description || "" })));
        d.append(tb);
      }
      if (op.requestBody) {
        const c = Object.values(op.requestBody.content || {})[0];
        d.append(el("h4", { text: "Request body" }), el("p", { text: op.requestBody.description || "" }), el("pre", { text: schemaText(c?.schema || {}) }));
      }
      const rs = el("table", {}, el("tr", {}, el("th", { text: "status" }), el("th", { text: "description" }), el("th", { text: "body" })));
      for (const [code, r] of Object.entries(op.responses || {})) {
        const c = Object.values(r.content || {})[0];
        rs.append(el("tr", {}, el("td", { text: code }), el("td", { text: r.description || "" }), el("td", {}, c ? el("code", { text: c.schema?.$ref?.split("/").pop() || (c.schema?.items?.$ref ? `[${c.schema.items.$ref.split("/").pop()}]` : schemaText(c.schema || {})) }) : "")));
      }
      d.append(el("h4", { text: "Responses" }), rs);
      sec.append(d);
    }
    root.append(sec);
  }
  const schemas = el("section", { class: "tag" }, el("h2", { text: "Schemas" }));
  for (const [name, s] of Object.entries(doc.components?.schemas || {})) {
    schemas.append(el("details", { class: "op", id: `schema-${name}` }, el("summary", {}, el("code", { text: name })), el("pre", { text: schemaText(s) })));
  }
  root.append(schemas);
})().catch((e) => { document.getElementById("docs").textContent = `Could not load the API document: ${e}`; });
