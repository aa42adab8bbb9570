// The Plan & Usage page: plain JavaScript, no dependencies, served by the credits service.
// It reads a portal token from the URL fragment (#token=pt_...), keeps it for this tab only
// (sessionStorage, so the Stripe Checkout return finds it), and draws what the JSON routes
// answer: /overview, /usage, /transactions; /changes (server-sent events) says when to redraw.
"use strict";
(function () {
  const TOKEN_KEY = "credits.portal.token";
  const PALETTE = ["#0b5cad", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#4d5661"];
  const KIND_LABELS = {
    allocation: "Plan allocation", renew: "Renewal", purchase: "Purchase", top_up: "Top-up",
    grant: "Grant (bonus, trial or admin)", usage: "Usage", reserve: "Reserved", capture: "Captured",
    release: "Released", hold_expired: "Reservation expired", revoke: "Refund (revoked)",
    expire: "Expired", plan_change: "Plan change",
  };
  const MAX_STREAM_FAILURES = 20;
  const PAGE_SIZE = 20;
  const state = {
    token: null, accountId: null, expiresAt: 0, days: 30, stackBy: "action", metric: "count",
    overview: null, usage: null, cursors: [null], page: 0, nextBefore: null, position: 0,
    refreshing: null, again: false, stopped: false,
  };
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  }
  const fmt = (n) => Number(n).toLocaleString("en-US");
  function money(cents, currency) {
    return new Intl.NumberFormat("en-US", { style: "currency", currency: currency.toUpperCase() }).format(cents / 100);
  }
  const creditsToCents = (credits, rate) => Math.floor((credits * rate.per_cents) / rate.credits);
  const centsToCredits = (cents, rate) => Math.floor((cents * rate.credits) / rate.per_cents);

  // ---------------------------------------------------------------- token and notices

  function readToken() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    let token = fragment.get("token");
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else token = sessionStorage.getItem(TOKEN_KEY);
    } catch (_) { /* storage blocked (some embedded contexts): the fragment alone works */ }
    if (fragment.has("token")) history.replaceState(null, "", location.pathname + location.search);
    return token;
  }
  function decodeToken(token) {
    try {
      const payload = token.slice(3).split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
      const data = JSON.parse(atob(payload + "=".repeat((4 - (payload.length % 4)) % 4)));
      return typeof data.account_id === "string" && Number.isInteger(data.exp) ? data : null;
    } catch (_) { return null; }
  }
  function notice(kind, text, testid, id) {
    const existing = id ? document.getElementById(id) : null;
    const node = el("div", { className: "notice-" + kind, role: kind === "ok" ? "status" : "alert", "data-testid": testid, id, text });
    if (existing) existing.replaceWith(node); else $("notices").append(node);
    return node;
  }
  function clearNotice(id) { const node = document.getElementById(id); if (node) node.remove(); }
  function refused(text) {
    state.stopped = true;
    $("app").setAttribute("aria-busy", "false");
    setLive(false);
    notice("err", text, "refused", "refused");
    if (window.parent !== window) window.parent.postMessage({ type: "credits-portal:token-expired" }, "*");
  }
  function checkoutReturn() {
    const params = new URLSearchParams(location.search);
    const outcome = params.get("checkout");
    if (outcome === "success") notice("ok", "Payment received, thank you. Your credits appear here as soon as Stripe confirms the payment.", "checkout-notice", "checkout-notice");
    else if (outcome === "cancel") notice("warn", "Checkout cancelled: nothing was charged.", "checkout-notice", "checkout-notice");
  }

  // ---------------------------------------------------------------- data

  async function api(path, options) {
    const response = await fetch("/v1/accounts/" + encodeURIComponent(state.accountId) + path, {
      cache: "no-store", ...options,
      headers: { Authorization: "Bearer " + state.token, ...(options && options.headers) },
    });
    if (response.status === 401) { refused("This page's link has expired or is not valid: open Plan & Usage again from your account."); throw new Error("401"); }
    if (response.status === 403) { refused("This link does not give access to this account."); throw new Error("403"); }
    return response;
  }
  async function json(path, options) {
    const response = await api(path, options);
    const body = await response.json();
    if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
    return body;
  }
  function usagePath() {
    const to = new Date();
    const from = new Date(to.getTime() - (state.days - 1) * 86400000);
    return "/usage?from=" + from.toISOString().slice(0, 10) + "&to=" + to.toISOString().slice(0, 10);
  }
  function transactionsPath() {
    const cursor = state.cursors[state.page];
    return "/transactions?limit=" + PAGE_SIZE + (cursor ? "&before=" + encodeURIComponent(cursor) : "");
  }

  async function refresh(minPosition) {
    if (state.refreshing) { state.again = true; return state.refreshing; }
    const wait = minPosition ? "?min_position=" + minPosition : "";
    const joiner = minPosition ? "&min_position=" + minPosition : "";
    state.refreshing = (async () => {
      try {
        const [overview, usage, history] = await Promise.all([
          json("/overview" + wait), json(usagePath() + joiner), json(transactionsPath() + joiner),
        ]);
        state.overview = overview;
        state.usage = usage;
        state.position = Math.max(state.position, overview.position);
        drawOverview(overview, usage);
        drawChart();
        drawHistory(history);
        document.body.dataset.position = String(state.position);
        $("app").setAttribute("aria-busy", "false");
      } catch (error) {
        if (!state.stopped) notice("err", "Could not load your plan: " + error.message, "load-error", "load-error");
        return;
      } finally {
        state.refreshing = null;
      }
      clearNotice("load-error");
      if (state.again) { state.again = false; await refresh(0); }
    })();
    return state.refreshing;
  }

  // ---------------------------------------------------------------- balances

  function todaySpent(usage) {
    const today = new Date().toISOString().slice(0, 10);
    const spent = {};
    for (const row of usage.usage) if (row.start === today) spent[row.credit_type] = (spent[row.credit_type] || 0) + row.credits;
    return spent;
  }
  function drawOverview(overview, usage) {
    $("catalog-name").textContent = overview.catalog;
    $("plan-name").textContent = overview.plan.name;
    const usedToday = todaySpent(usage);
    const cards = overview.credit_types.map((c) => creditCard(c, usedToday[c.credit_type] || 0));
    $("balances").replaceChildren(...cards);
    const low = overview.credit_types.filter((c) => c.low_balance);
    if (low.length) {
      notice("warn", "Low balance: " + low.map((c) => fmt(c.available) + " " + c.credit_type + " left (warning at " + fmt(c.low_balance_threshold) + " or fewer)").join("; ") + ".", "low-balance", "low-balance");
    } else clearNotice("low-balance");
    drawBuy(overview);
    tickCountdowns();
  }
  function part(label, value, testid) {
    return [el("dt", { text: label }), el("dd", { text: value, "data-testid": testid })];
  }
  function creditCard(c, usedToday) {
    const id = "ct-" + c.credit_type;
    const card = el("article", { className: "card", "data-testid": "credit-type", "data-credit-type": c.credit_type, "aria-labelledby": id + "-title" });
    card.append(el("h3", { id: id + "-title", text: c.credit_type }));
    card.append(el("p", { className: "big", "data-testid": "available", text: fmt(c.available) }));
    card.append(el("p", { className: "label", text: "available (unit: " + c.unit + ")" }));
    if (c.money && c.allocation) {
      const left = creditsToCents(c.allocation_remaining, c.money);
      const budget = creditsToCents(c.allocation.amount, c.money);
      card.append(el("p", { className: "money", "data-testid": "budget" }, "Budget left: ",
        el("strong", { "data-testid": "budget-left", text: money(left, c.money.currency) }), " of ",
        el("span", { "data-testid": "budget-total", text: money(budget, c.money.currency) })));
    }
    if (c.allocation && c.allocation.amount > 0) {
      const share = Math.max(0, Math.min(1, c.allocation_remaining / c.allocation.amount));
      const meter = el("div", { className: "meter", role: "meter", "aria-label": "plan allocation left", "aria-valuemin": 0, "aria-valuemax": c.allocation.amount, "aria-valuenow": c.allocation_remaining }, el("span"));
      meter.firstChild.style.width = (share * 100).toFixed(1) + "%";
      card.append(meter);
    }
    const parts = el("dl");
    if (c.allocation) parts.append(...part("Plan allocation left (" + fmt(c.allocation.amount) + " a " + c.allocation.period + ")", fmt(c.allocation_remaining), "allocation-remaining"));
    parts.append(...part("Purchased", fmt(c.purchased_remaining), "purchased-remaining"));
    if (c.other_remaining) parts.append(...part("Trial, promotional and other", fmt(c.other_remaining), "other-remaining"));
    if (c.held) parts.append(...part("Held by open reservations", fmt(c.held), "held"));
    if (c.overdraft) parts.append(...part("Overdrawn", fmt(c.overdraft), "overdraft"));
    if (c.debt) parts.append(...part("Owed", fmt(c.debt), "debt"));
    parts.append(...part("Used today", fmt(usedToday), "used-today"));
    parts.append(...part("Spendable now", fmt(c.spendable_with_overdraft), "spendable"));
    card.append(parts);
    if (c.next_reset_at) {
      card.append(el("p", { "data-testid": "reset" }, "Resets in ",
        el("strong", { "data-testid": "countdown", "data-reset-at": c.next_reset_at, text: "…" }),
        " (" + c.next_reset_at.replace("T", " ").slice(0, 16) + " UTC)"));
    }
    let rate;
    if (c.rate_per_day > 0) {
      rate = "Using about " + fmt(c.rate_per_day) + " a day (last " + c.rate_days + (c.rate_days === 1 ? " day" : " days") + "). ";
      rate += c.runs_out_on ? "At this rate it runs out on " + c.runs_out_on + "." : "It lasts until the next reset.";
    } else {
      rate = "No spending in the last " + c.rate_days + (c.rate_days === 1 ? " day." : " days.");
    }
    card.append(el("p", { "data-testid": "rate", text: rate }));
    return card;
  }
  function tickCountdowns() {
    let due = false;
    for (const node of document.querySelectorAll("[data-testid=countdown]")) {
      const left = Math.max(0, Math.floor((Date.parse(node.dataset.resetAt) - Date.now()) / 1000));
      if (left === 0) due = true;
      const d = Math.floor(left / 86400), h = Math.floor((left % 86400) / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      const pad = (n) => String(n).padStart(2, "0");
      node.textContent = (d ? d + "d " : "") + pad(h) + "h " + pad(m) + "m " + pad(s) + "s";
      node.dataset.seconds = String(left);
    }
    return due;
  }

  // ---------------------------------------------------------------- chart and totals

  function drawChart() {
    const usage = state.usage;
    const days = [];
    const last = new Date(usage.to + "T00:00:00Z");
    for (let i = state.days - 1; i >= 0; i--) days.push(new Date(last.getTime() - i * 86400000).toISOString().slice(0, 10));
    const keyOf = (row) => (state.stackBy === "action" ? row.action || "(by amount)" : row.credit_type);
    const values = {};
    const keys = new Set();
    for (const row of usage.usage) {
      const key = keyOf(row);
      keys.add(key);
      values[row.start] = values[row.start] || {};
      values[row.start][key] = (values[row.start][key] || 0) + row[state.metric];
    }
    const ordered = [...keys].sort();
    const colour = (key) => PALETTE[ordered.indexOf(key) % PALETTE.length];
    const totals = days.map((day) => ordered.reduce((sum, key) => sum + ((values[day] || {})[key] || 0), 0));
    const top = Math.max(1, ...totals);
    const width = 600, height = 220, left = 36, bottom = 20, barGap = 2;
    const band = (width - left) / days.length;
    const chart = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "Usage per day, " + (state.metric === "count" ? "uses" : "credits spent") + ", stacked by " + state.stackBy.replace("_", " ") + "; totals in the table below" });
    chart.append(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: "#4d5661" }));
    const axis = svg("text", { x: left - 4, y: 12, "text-anchor": "end", "font-size": 11, fill: "#4d5661" });
    axis.textContent = fmt(top);
    chart.append(axis);
    days.forEach((day, i) => {
      let y = height - bottom;
      for (const key of ordered) {
        const value = (values[day] || {})[key] || 0;
        if (!value) continue;
        const h = ((height - bottom - 16) * value) / top;
        y -= h;
        const bar = svg("rect", { x: left + i * band + barGap / 2, y, width: Math.max(1, band - barGap), height: h, fill: colour(key), "data-day": day, "data-key": key, "data-value": value });
        const title = svg("title", {});
        title.textContent = day + " · " + key + ": " + fmt(value);
        bar.append(title);
        chart.append(bar);
      }
      if (i === 0 || i === days.length - 1 || (days.length > 10 && i === Math.floor(days.length / 2))) {
        const label = svg("text", { x: left + i * band + band / 2, y: height - 4, "text-anchor": i === 0 ? "start" : i === days.length - 1 ? "end" : "middle", "font-size": 11, fill: "#4d5661" });
        label.textContent = day.slice(5);
        chart.append(label);
      }
    });
    $("chart").replaceChildren(chart);
    $("legend").replaceChildren(...ordered.map((key) => el("span", {}, legendSwatch(colour(key)), key)));
    drawTotals();
  }
  function legendSwatch(colour) { const swatch = el("i", { "aria-hidden": "true" }); swatch.style.background = colour; return swatch; }
  function drawTotals() {
    const sums = {};
    for (const row of state.usage.usage) {
      const key = (row.action || "") + "\u0000" + row.credit_type;
      sums[key] = sums[key] || { action: row.action, credit_type: row.credit_type, count: 0, credits: 0 };
      sums[key].count += row.count;
      sums[key].credits += row.credits;
    }
    const costs = Object.fromEntries(state.overview.actions.map((a) => [a.action, a.cost]));
    const rows = Object.values(sums).sort((a, b) => String(a.action).localeCompare(String(b.action)));
    $("usage-totals").tBodies[0].replaceChildren(...(rows.length ? rows.map((r) => el("tr", { "data-testid": "usage-total", "data-action": r.action || "" },
      el("td", { text: r.action || "(by amount)" }), el("td", { text: r.credit_type }),
      el("td", { className: "num", text: r.action in costs ? (costs[r.action] === 0 ? "free" : fmt(costs[r.action])) : "–" }),
      el("td", { className: "num", "data-testid": "uses", text: fmt(r.count) }),
      el("td", { className: "num", "data-testid": "credits", text: fmt(r.credits) }))) : [el("tr", {}, el("td", { colspan: 5, text: "No usage in this range." }))]));
  }

  // ---------------------------------------------------------------- history

  function drawHistory(page) {
    state.nextBefore = page.next_before;
    const rows = page.transactions.map((t) => {
      let what = KIND_LABELS[t.kind] || t.kind;
      if (t.kind === "usage" && t.reference) what += ": " + t.reference;
      if (t.kind === "plan_change" && t.reference) what += " to " + t.reference;
      what += originText(t);
      return el("tr", { "data-testid": "tx-row", "data-kind": t.kind },
        el("td", { text: t.at.replace("T", " ").slice(0, 19) }), el("td", { text: what }),
        el("td", { text: t.credit_type }),
        el("td", { className: "num", "data-testid": "tx-delta", text: (t.delta > 0 ? "+" : "") + fmt(t.delta) }),
        el("td", { className: "num", text: fmt(t.available_after) }));
    });
    $("history").tBodies[0].replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 5, text: "Nothing yet." }))]));
    $("older").disabled = !state.nextBefore;
    $("newer").disabled = state.page === 0;
    $("page-no").textContent = "Page " + (state.page + 1);
  }
  // What the row's origin adds to its label (null origin: rows older than origins).
  function originText(t) {
    const o = t.origin;
    if (!o) return "";
    if (o.pack) return ": " + o.pack;
    if ((t.kind === "allocation" || t.kind === "renew") && o.plan) return ": " + o.plan + (o.period_id ? ", period from " + o.period_id : "");
    if (t.kind === "top_up" && o.top_up_id) return " " + o.top_up_id;
    if (t.kind === "grant") return " – " + o.source + (o.reason ? ": " + o.reason : "");
    if (t.kind === "revoke" && o.reason) return ": " + o.reason;
    return "";
  }
  async function turnPage(step) {
    if (step > 0 && state.nextBefore) { state.cursors[state.page + 1] = state.nextBefore; state.page += 1; }
    else if (step < 0 && state.page > 0) state.page -= 1;
    else return;
    drawHistory(await json(transactionsPath()));
  }

  // ---------------------------------------------------------------- buying

  function drawBuy(overview) {
    const buy = overview.buy;
    const groups = [];
    if (buy.packs.length) {
      groups.push(el("div", { className: "buy-group" }, el("h3", { text: "Packs" }),
        el("div", { className: "buy-row" }, ...buy.packs.map((p) => el("button", {
          type: "button", "data-testid": "buy-pack", "data-pack": p.pack,
          text: p.name + " (" + fmt(p.amount) + " " + p.credit_type + "): " + money(p.price_cents, p.currency),
          onclick: () => checkout({ pack: p.pack }),
        })))));
    }
    for (const a of buy.amounts) groups.push(amountForm(a));
    for (const t of buy.top_ups) groups.push(topUpForm(t));
    for (const r of buy.refused) groups.push(el("p", { className: "refused", "data-testid": "buy-refused", "data-credit-type": r.credit_type, text: r.reason }));
    $("buy").replaceChildren(...groups);
  }
  function amountForm(a) {
    const id = "amount-" + a.credit_type;
    const min = a.min_cents / 100, max = a.max_cents === null ? null : a.max_cents / 100;
    const input = el("input", { id, type: "number", inputmode: "decimal", min, max, step: "0.01", value: min.toFixed(2), "data-testid": "amount-input", "aria-describedby": id + "-hint" });
    const output = el("output", { for: id, "data-testid": "amount-credits" });
    const update = () => { output.textContent = "= " + fmt(centsToCredits(Math.round(Number(input.value) * 100) || 0, a)) + " " + a.credit_type; };
    input.addEventListener("input", update);
    update();
    const form = el("form", { "data-testid": "amount-form", onsubmit: (event) => {
      event.preventDefault();
      const cents = Math.round(Number(input.value) * 100);
      if (!(cents >= a.min_cents) || (a.max_cents !== null && cents > a.max_cents)) {
        notice("err", "Choose an amount between " + money(a.min_cents, a.currency) + (max === null ? "" : " and " + money(a.max_cents, a.currency)) + ".", "buy-error", "buy-error");
        return;
      }
      checkout({ credit_type: a.credit_type, amount_cents: cents });
    } }, el("label", { for: id }, "Amount (" + a.currency.toUpperCase() + ")", input), output,
      el("button", { type: "submit", text: "Buy " + a.credit_type }));
    return el("div", { className: "buy-group" }, el("h3", { text: "Buy " + a.credit_type + " by amount" }), form,
      el("p", { className: "hint", id: id + "-hint", text: "Minimum " + money(a.min_cents, a.currency) + (max === null ? "" : ", maximum " + money(a.max_cents, a.currency)) + ". Your plan gets " + fmt(a.credits) + " " + a.credit_type + " for every " + money(a.per_cents, a.currency) + "." }));
  }
  function topUpForm(t) {
    const id = "top-up-" + t.credit_type;
    const input = el("input", { id, type: "number", inputmode: "numeric", min: t.min_credits, max: t.max_credits, step: 1, value: t.min_credits, "data-testid": "top-up-input" });
    const output = el("output", { for: id, "data-testid": "top-up-price" });
    const update = () => { output.textContent = "= " + money((Number(input.value) || 0) * t.price_per_credit_cents, t.currency); };
    input.addEventListener("input", update);
    update();
    const form = el("form", { "data-testid": "top-up-form", onsubmit: (event) => {
      event.preventDefault();
      const amount = Number(input.value);
      if (!Number.isInteger(amount) || amount < t.min_credits || amount > t.max_credits) {
        notice("err", "Choose between " + fmt(t.min_credits) + " and " + fmt(t.max_credits) + " " + t.credit_type + ".", "buy-error", "buy-error");
        return;
      }
      topUp(t, amount);
    } }, el("label", { for: id }, "Credits", input), output, el("button", { type: "submit", text: "Top up now" }));
    const auto = t.auto
      ? "Auto top-up (your plan's default): below " + fmt(t.auto.threshold) + ", buy " + fmt(t.auto.amount) + ", at most " + t.auto.max_per_month + " times a month."
      : "Auto top-up is not on by default for this plan.";
    return el("div", { className: "buy-group", "data-testid": "top-up", "data-credit-type": t.credit_type }, el("h3", { text: "Top up " + t.credit_type + " (charged to your saved card)" }), form,
      el("p", { className: "hint", text: fmt(t.min_credits) + " to " + fmt(t.max_credits) + " at " + money(t.price_per_credit_cents, t.currency) + " each. " + auto }));
  }
  async function checkout(order) {
    clearNotice("buy-error");
    try {
      const response = await fetch("/v1/checkout", {
        method: "POST", cache: "no-store",
        headers: { Authorization: "Bearer " + state.token, "Content-Type": "application/json" },
        body: JSON.stringify({ account_id: state.accountId, ...order }),
      });
      const body = await response.json();
      if (!response.ok || !body.url) throw new Error((body.error && body.error.message) || "no checkout address");
      goTo(body.url);
    } catch (error) {
      notice("err", "Could not start the checkout: " + error.message, "buy-error", "buy-error");
    }
  }
  function goTo(url) {
    // Stripe Checkout refuses to be framed: an embedded page sends its whole window there.
    if (window.top !== window.self) {
      try { window.top.location.href = url; return; } catch (_) { window.open(url, "_blank", "noopener"); return; }
    }
    location.assign(url);
  }
  function commandId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  async function topUp(t, amount) {
    clearNotice("buy-error");
    try {
      const body = await json("/commands", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ type: "request_top_up", command_id: commandId(), credit_type: t.credit_type, amount }),
      });
      if (body.ok === false) throw new Error((body.error && body.error.message) || "refused");
      notice("ok", "Top-up of " + fmt(amount) + " " + t.credit_type + " requested: your saved card is charged " + money(amount * t.price_per_credit_cents, t.currency) + ".", "top-up-notice", "top-up-notice");
    } catch (error) {
      notice("err", "Could not request the top-up: " + error.message, "buy-error", "buy-error");
    }
  }

  // ---------------------------------------------------------------- live updates

  function setLive(on) {
    const live = $("live");
    live.dataset.state = on ? "on" : "off";
    live.textContent = on ? "live" : "offline";
  }
  function handleFrame(frame) {
    let event = "message", data = "";
    for (const line of frame.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trim();
    }
    if (event === "changed") {
      const position = JSON.parse(data).position;
      if (position > state.position) refresh(position);
    } else if (event === "expired") {
      refused("This page's session has ended: open Plan & Usage again from your account.");
    }
  }
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  // Server-sent events read with fetch (EventSource cannot send the Authorization header).
  async function follow() {
    let failures = 0;
    while (!state.stopped && failures < MAX_STREAM_FAILURES) {
      try {
        const response = await api("/changes?since=" + state.position, { headers: { Accept: "text/event-stream" } });
        if (!response.ok || !response.body) throw new Error(String(response.status));
        setLive(true);
        failures = 0;
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            handleFrame(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch (_) {
        failures += 1;
      }
      setLive(false);
      if (state.stopped || Date.now() / 1000 >= state.expiresAt) break;
      await sleep(Math.min(30000, 500 * 2 ** Math.min(failures, 6)));
    }
  }

  // ---------------------------------------------------------------- start

  function wire() {
    for (const button of $("range").querySelectorAll("button")) {
      button.addEventListener("click", () => {
        state.days = Number(button.dataset.days);
        for (const other of $("range").querySelectorAll("button")) other.setAttribute("aria-pressed", String(other === button));
        refresh(0);
      });
    }
    $("stack-by").addEventListener("change", (event) => {
      state.stackBy = event.target.value;
      state.metric = state.stackBy === "action" ? "count" : "credits";
      if (state.usage) drawChart();
    });
    $("older").addEventListener("click", () => turnPage(1));
    $("newer").addEventListener("click", () => turnPage(-1));
    window.addEventListener("message", (event) => {
      // A host may hand over a fresh token (the page told it the old one expired).
      const data = event.data || {};
      if (event.source === window.parent && data.type === "credits-portal:token" && typeof data.token === "string") {
        const decoded = decodeToken(data.token);
        if (decoded && decoded.account_id === state.accountId) {
          state.token = data.token; state.expiresAt = decoded.exp; state.stopped = false;
          clearNotice("refused"); refresh(0); follow();
        }
      }
    });
    let resetting = false;
    setInterval(() => {
      if (tickCountdowns() && !resetting && !state.stopped) { resetting = true; setTimeout(() => { resetting = false; refresh(0); }, 2000); }
    }, 1000);
  }
  function start() {
    checkoutReturn();
    state.token = readToken();
    const decoded = state.token ? decodeToken(state.token) : null;
    if (!decoded) {
      refused("Open this page from your account: it needs a portal link (#token=…).");
      return;
    }
    state.accountId = decoded.account_id;
    state.expiresAt = decoded.exp;
    wire();
    // Followed even if the first load failed: an account opened a moment ago may not be in the
    // read models yet, and its first `changed` draws it.
    refresh(0).then(() => { if (!state.stopped) follow(); });
  }
  document.addEventListener("DOMContentLoaded", start);
})();
