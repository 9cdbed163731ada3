// Kakanai staff UI — the only script of the tablet pages (served from the
// appliance; the Content-Security-Policy allows nothing else).
//
// What it does, progressively (every form also works without it):
// - keeps the status strip live from the Server-Sent Events at /events;
// - refreshes the page's live panel ([data-panel-src], e.g. the card screen's and
//   the visit's) when /events names one of its events ([data-panel-on]): events
//   carry no personal data, the panel is fetched with the session cookie;
// - drives the on-screen keypads (digits go into the form's own input only);
// - posts forms marked data-async in the background and refreshes the panel.
'use strict';

(function () {
  function now() {
    return performance.timeOrigin + performance.now();
  }

  function setText(el, text) {
    if (el) { el.textContent = text; }
  }

  function applyStatus(s) {
    document.body.dataset.online = String(s.online);
    const strip = document.getElementById('status-strip');
    if (strip) { strip.dataset.lights = s.lights; }
    (s.items || []).forEach(function (item) {
      const el = document.querySelector('[data-status="' + item.id + '"]');
      if (!el) { return; }
      el.dataset.tone = item.tone;
      setText(el.querySelector('.value'), item.label);
    });
    const banner = document.getElementById('offline-banner');
    if (banner) { banner.hidden = !!s.online; }
    // Delivery time of the event (server clock and this one are the same machine's
    // when the tablet's browser runs on the appliance, as in the benchmarks).
    if (typeof s.t === 'number') {
      document.body.dataset.statusLatencyMs = String(now() - s.t);
    }
  }

  let refreshing = null;
  let again = false;

  function livePanel() {
    return document.querySelector('[data-panel-src]');
  }

  // Staff typing in the panel (a name, a kana prefix) keep what they typed: the
  // refresh waits until they leave the field.
  function typing(panel) {
    const a = document.activeElement;
    return !!a && panel.contains(a) && a.tagName === 'INPUT' && a.type !== 'hidden' && a.value !== '';
  }

  async function refreshPanel() {
    const panel = livePanel();
    if (!panel) { return; }
    if (typing(panel)) {
      document.activeElement.addEventListener('blur', function () { refreshPanel(); }, { once: true });
      return;
    }
    if (refreshing) { again = true; return refreshing; }
    refreshing = (async function () {
      do {
        again = false;
        try {
          const r = await fetch(panel.dataset.panelSrc + location.search, { cache: 'no-store', credentials: 'same-origin' });
          if (r.status === 401) { location.assign('/login'); return; }
          if (r.ok) {
            // Digits being typed on a keypad survive the refresh.
            const typed = {};
            panel.querySelectorAll('form[data-keypad]').forEach(function (f) {
              const i = f.querySelector('.keypad-input');
              if (i && i.value) { typed[f.dataset.keypad] = i.value; }
            });
            panel.innerHTML = await r.text();
            bind(panel, typed);
            document.body.dataset.panelAt = String(now());
          }
        } catch (e) {
          // The appliance itself is unreachable: the strip says so below.
        }
      } while (again);
    })();
    try { await refreshing; } finally { refreshing = null; }
  }

  function connectEvents() {
    if (!window.EventSource) { return; }
    const es = new EventSource('/events');
    es.addEventListener('status', function (e) { applyStatus(JSON.parse(e.data)); });
    ['card', 'visit'].forEach(function (name) {
      es.addEventListener(name, function () {
        const panel = livePanel();
        if (!panel || (panel.dataset.panelOn || '').split(' ').indexOf(name) < 0) { return; }
        // A refresh keeps the digits being typed (refreshPanel), so a visit event is
        // heard on the card screen too: it may send staff back to the visit.
        refreshPanel();
      });
    });
    es.addEventListener('open', function () {
      document.body.dataset.appliance = 'up';
      refreshPanel();
    });
    es.addEventListener('error', function () {
      // EventSource reconnects by itself; meanwhile nothing shown can be trusted.
      document.body.dataset.appliance = 'down';
    });
  }

  function bindKeypad(form, typed) {
    const length = Number(form.dataset.length);
    const input = form.querySelector('.keypad-input');
    const slots = Array.prototype.slice.call(form.querySelectorAll('.slot'));
    const submit = form.querySelector('[data-action="submit"]');
    const secret = form.dataset.keypad === 'pin';
    form.classList.add('scripted');
    input.value = (typed || '').slice(0, length);
    function show() {
      const v = input.value;
      slots.forEach(function (slot, i) {
        slot.textContent = i < v.length ? (secret ? '●' : v[i]) : '';
        slot.classList.toggle('filled', i < v.length);
      });
      submit.disabled = v.length !== length;
    }
    form.querySelectorAll('[data-key]').forEach(function (key) {
      key.addEventListener('click', function () {
        if (input.value.length < length) { input.value += key.dataset.key; }
        show();
      });
    });
    const back = form.querySelector('[data-action="back"]');
    back.addEventListener('click', function () {
      input.value = input.value.slice(0, -1);
      show();
    });
    show();
  }

  async function postAsync(form, event) {
    event.preventDefault();
    const buttons = form.querySelectorAll('button');
    buttons.forEach(function (b) { b.disabled = true; });
    // Visible progress while the appliance answers.
    form.classList.add('sending');
    document.body.dataset.sending = 'true';
    const body = new URLSearchParams(new FormData(form));
    // Digits typed on a keypad leave the page's memory once sent.
    const input = form.querySelector('.keypad-input');
    if (input) { input.value = ''; }
    try {
      // The attribute, not the property: a control named "action" would shadow it.
      const r = await fetch(form.getAttribute('action'), { method: 'POST', body: body, credentials: 'same-origin', redirect: 'follow' });
      const to = r.redirected ? new URL(r.url).pathname : null;
      if (to === '/login') { location.assign('/login'); return; }
      const panel = livePanel();
      // An action that leads elsewhere (a card taken into the visit, the visit
      // ended) goes there.
      if (to && (to !== location.pathname || !panel)) { location.assign(r.url); return; }
      if (r.status === 409 && panel) {
        panel.innerHTML = await r.text();
        bind(panel);
        return;
      }
      if (r.status === 403) { location.reload(); return; }
      // The page the post led to may already send staff on (a quick card read
      // taken into a 転入 visit): that is said once, so it is followed here.
      const go = r.ok ? /data-goto="([^"]+)"/.exec(await r.text()) : null;
      if (go) { location.assign(go[1]); return; }
      await refreshPanel();
    } catch (e) {
      buttons.forEach(function (b) { b.disabled = false; });
    } finally {
      form.classList.remove('sending');
      delete document.body.dataset.sending;
    }
  }

  function bind(root, typed) {
    // The server sends staff on (a card taken into a 転入 visit goes back to it).
    const go = root.querySelector('[data-goto]');
    if (go) { location.assign(go.dataset.goto); return; }
    root.querySelectorAll('form[data-keypad]').forEach(function (form) {
      bindKeypad(form, (typed || {})[form.dataset.keypad]);
    });
    root.querySelectorAll('form[data-async]').forEach(function (form) {
      form.addEventListener('submit', function (e) { postAsync(form, e); });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    bind(document);
    connectEvents();
  });
})();
