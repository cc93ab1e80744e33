/* The swarm as its events describe it: plain state, no drawing. Its parts share window.SwarmModel
 * and load in this order (index.html):
 *
 *   model-base.js    short names, link keys, tier colours: what every part uses
 *   model-credit.js  which technique a kept change is, and whether its effect was measured
 *   model-spread.js  how far and how fast each discovery spread (virtual time, real delivery)
 *   model-swarm.js   the Swarm, which folds each event into that state: peers, links, research
 *                    events, the best per tier
 */
"use strict";

(function (global) {
  const KNOWN_TIERS = ["gpu-large", "gpu-consumer", "cpu"];
  const TIER_COLORS = { "gpu-large": "#b57bff", "gpu-consumer": "#4d8dff", "cpu": "#2cc5d3" };
  const EXTRA_TIER_COLORS = ["#e879f9", "#94a3b8", "#a3e635", "#f472b6"];

  function shortName(id) {
    if (id === undefined || id === null) return "?";
    id = String(id);
    // libp2p peer ids share their first characters (12D3KooW…, Qm…): their tail tells them apart
    if (/^(12D3KooW|16Uiu2)/.test(id) && id.length > 20) return "…" + id.slice(-6);
    if (id.length <= 14) return id;
    if (/^[a-z][a-z0-9]*([-_.][a-z0-9]+)+$/i.test(id) && id.length <= 24) return id;
    return id.slice(0, 8);
  }

  function shortId(hash) {
    return hash ? String(hash).slice(0, 8) : "?";
  }

  function linkKey(a, b) {
    return a < b ? a + "|" + b : b + "|" + a;
  }

  function finite(x) {
    return typeof x === "number" && isFinite(x);
  }

  function tierRank(name, order) {
    const known = KNOWN_TIERS.indexOf(name);
    if (known >= 0) return known;
    if (name === "unknown") return 1000;
    return 100 + order.indexOf(name);
  }

  function tierColor(name, order) {
    if (TIER_COLORS[name]) return TIER_COLORS[name];
    if (name === "unknown") return "#64748b";
    const extras = order.filter((t) => !TIER_COLORS[t] && t !== "unknown");
    return EXTRA_TIER_COLORS[Math.max(0, extras.indexOf(name)) % EXTRA_TIER_COLORS.length];
  }

  /** Copies the methods of `part` (a class whose methods belong to `target`, written in another
   *  file) onto `target`'s prototype, as they would be had they been written in its body. */
  function addMethods(target, ...parts) {
    for (const part of parts) {
      const methods = Object.getOwnPropertyDescriptors(part.prototype);
      delete methods.constructor;
      Object.defineProperties(target.prototype, methods);
    }
  }

  global.SwarmModel = { shortName, shortId, linkKey, finite, tierRank, tierColor, addMethods };
})(window);
