// natsmesh portal: keep every live figure current by polling /api/state (no build step, no framework).
(function () {
  const every = 2000;
  function set(selector, apply) { document.querySelectorAll(selector).forEach(apply); }
  function cls(el, state) { el.classList.remove("ok", "critical", "stalled", "unknown", "up", "down"); el.classList.add(state); }
  async function refresh() {
    try {
      const r = await fetch("/api/state", { cache: "no-store" });
      if (!r.ok) throw new Error(r.status);
      const s = await r.json();
      for (const [name, up] of Object.entries(s.servers)) set(`[data-server="${CSS.escape(name)}"]`, el => cls(el, up ? "up" : "down"));
      for (const [domain, up] of Object.entries(s.links)) set(`[data-link="${CSS.escape(domain)}"]`, el => { cls(el, up ? "up" : "down"); el.textContent = up ? "up" : "down"; });
      for (const [id, c] of Object.entries(s.copies)) {
        set(`[data-copy="${CSS.escape(id)}"][data-field=lag]`, el => { el.textContent = c.lag === null ? "–" : String(c.lag); });
        set(`[data-copy="${CSS.escape(id)}"][data-field=seen]`, el => { el.textContent = c.seen === null ? "–" : c.seen; });
        set(`[data-copy="${CSS.escape(id)}"][data-field=state]`, el => { cls(el, c.state); el.textContent = c.state; });
        set(`[data-copy="${CSS.escape(id)}"][data-field=node]`, el => cls(el, c.state));
      }
      for (const [ref, held] of Object.entries(s.products || {})) set(`[data-product="${CSS.escape(ref)}"][data-field=held]`, el => { el.textContent = held; });
      const u = document.getElementById("updated");
      if (u) u.textContent = "updated " + new Date(s.taken * 1000).toLocaleTimeString();
    } catch (e) {
      const u = document.getElementById("updated");
      if (u) u.textContent = "not updating: " + e;
    }
  }
  refresh();
  setInterval(refresh, every);
})();
