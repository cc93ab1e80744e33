/* The Swarm (see model-base.js for the model's parts): `apply(event)` folds one event (see
 * swarm_node/events.py) into the state and notes in `changes` what the views must redraw; the views
 * read the state and clear `changes`. Its spread and credit methods come from model-spread.js and
 * model-credit.js.
 */
"use strict";

(function (M) {
  const { shortName, shortId, linkKey, finite, tierRank, discoveryChanges } = M;
  const FEED_KEEP = 120;

  function freshChanges(all) {
    return {
      full: all,             // everything must be redrawn (after a reset)
      peers: new Set(),      // peers whose node changed (added, tier, left)
      links: new Set(),      // link keys added or removed
      touches: [],           // {kind: author|received|adopted|reject, id, peer, from} for flashes
      counters: all, spread: all, discoveries: all, leaderboard: all, trajectory: all, feed: all,
    };
  }

  class Swarm {
    constructor() {
      this.reset();
    }

    reset() {
      this.t = 0;
      this.applied = 0;
      this.peers = new Map();        // id -> {id, name, tier, role, alive, order, experiments, best, head}
      this.alive = 0;
      this.links = new Map();        // "a|b" -> {a, b}
      this.discoveries = new Map();  // id -> discovery (see discovery())
      this.discoveryOrder = [];      // ids, oldest first
      this.effects = new Map();      // "tier:state" -> Map(name -> effect event), the last of a name wins
      this.states = new Map();       // state hash -> {state, parent, via, val, test, peer, tier, t, description, diff}
      this.best = new Map();         // tier -> {tier, val, test, state, peer, t, discovery}
      this.trajectory = new Map();   // tier -> [[t, val], ...] (each improvement of the tier's best)
      this.tierOrder = [];
      this.feed = [];                // newest last, at most FEED_KEEP
      this.counters = { peers: 0, links: 0, experiments: 0, keeps: 0, discards: 0, crashes: 0,
        discoveries: 0, receipts: 0, adoptions: 0, rejected: 0 };
      this.lastTouched = null;       // id of the discovery that spread most recently
      this.changes = freshChanges(true);
    }

    takeChanges() {
      const c = this.changes;
      this.changes = freshChanges(false);
      return c;
    }

    // --- peers and links -------------------------------------------------------------------

    tier(name) {
      name = name || "unknown";
      if (!this.tierOrder.includes(name)) {
        this.tierOrder.push(name);
        this.tierOrder.sort((a, b) => tierRank(a, this.tierOrder) - tierRank(b, this.tierOrder));
      }
      return name;
    }

    peer(id, tier) {
      let p = this.peers.get(id);
      if (!p) {
        p = { id, name: shortName(id), tier: this.tier(tier), role: null, alive: true, order: this.peers.size,
          experiments: 0, keeps: 0, best: null, head: null, lastStatus: null };
        this.peers.set(id, p);
        this.alive += 1;
        this.changes.peers.add(id);
        this.changes.counters = true;
      } else if (tier && p.tier !== tier) {
        p.tier = this.tier(tier);
        this.changes.peers.add(id);
      }
      return p;
    }

    join(e) {
      const p = this.peer(e.peer, e.tier);
      if (e.role) p.role = e.role;
      if (!p.alive) {
        p.alive = true;
        this.alive += 1;
        this.changes.peers.add(p.id);
        this.changes.counters = true;
      }
    }

    leave(e) {
      const p = this.peers.get(e.peer);
      if (!p || !p.alive) return;
      p.alive = false;
      this.alive -= 1;
      this.changes.peers.add(p.id);
      for (const [key, link] of this.links) {
        if (link.a === p.id || link.b === p.id) {
          this.links.delete(key);
          this.changes.links.add(key);
        }
      }
      this.changes.counters = true;
    }

    link(e) {
      if (!e.a || !e.b || e.a === e.b) return;
      this.peer(e.a);
      this.peer(e.b);
      const key = linkKey(e.a, e.b);
      if (!this.links.has(key)) {
        this.links.set(key, { a: e.a, b: e.b });
        this.changes.links.add(key);
        this.changes.counters = true;
      }
    }

    unlink(e) {
      const key = linkKey(e.a, e.b);
      if (this.links.delete(key)) {
        this.changes.links.add(key);
        this.changes.counters = true;
      }
    }

    // --- research --------------------------------------------------------------------------

    experiment(e) {
      const p = this.peer(e.peer, e.tier);
      p.experiments += 1;
      p.lastStatus = e.status;
      const c = this.counters;
      c.experiments += 1;
      if (e.status === "keep") { c.keeps += 1; p.keeps += 1; }
      else if (e.status === "discard") c.discards += 1;
      else if (e.status === "crash") c.crashes += 1;
      this.feed.push({ t: e.t, peer: p.id, tier: p.tier, description: e.description || "", val: e.val_bpb,
        test: e.test_bpb, status: e.status || "?" });
      if (this.feed.length > FEED_KEEP * 2) this.feed = this.feed.slice(-FEED_KEEP);
      this.changes.feed = this.changes.counters = true;
      if (finite(e.val_bpb) && (e.status === "keep" || e.status === "baseline")) {
        if (finite(e.val_bpb) && (p.best === null || e.val_bpb < p.best)) p.best = e.val_bpb;
        if (e.state && !this.states.has(e.state)) {
          this.states.set(e.state, { state: e.state, parent: null, via: null, val: e.val_bpb, test: e.test_bpb,
            peer: p.id, tier: p.tier, t: e.t, description: e.description || e.status, diff: null,
            baseline: e.status === "baseline" });
        }
        if (e.state) p.head = e.state;
        this.offerBest(p.tier, { val: e.val_bpb, test: e.test_bpb, state: e.state, peer: p.id, t: e.t, discovery: null });
      }
    }

    discovery(e) {
      const first = !this.discoveries.has(e.id) || this.discoveries.get(e.id).placeholder;
      const d = this.ensureDiscovery(e.id, e.t, e.peer);
      const p = this.peer(e.peer, e.tier);
      Object.assign(d, { peer: p.id, tier: p.tier, state: e.state || e.id, parent: e.parent || null,
        val: e.val_bpb, test: e.test_bpb, description: e.description || "", diff: e.diff || "",
        changed: discoveryChanges(e), placeholder: false });
      if (e.t < d.t) d.t = e.t;
      // real delivery counts from its first publication (another agent may find the same state later)
      if (!finite(d.wall) && finite(e.wall)) { d.wall = e.wall; d.firstAuthor = p.id; }
      if (first) this.counters.discoveries += 1;
      this.states.set(d.state, { state: d.state, parent: d.parent, via: d.id, val: d.val, test: d.test,
        peer: p.id, tier: p.tier, t: e.t, description: d.description, diff: d.diff, baseline: false });
      if (finite(e.val_bpb) && (p.best === null || e.val_bpb < p.best)) p.best = e.val_bpb;
      p.head = d.state;
      this.reach(d, p.id, e.t);
      this.offerBest(p.tier, { val: d.val, test: d.test, state: d.state, peer: p.id, t: e.t, discovery: d.id });
      this.changes.touches.push({ kind: "author", id: d.id, peer: p.id, from: null });
      this.lastTouched = d.id;
      this.changes.discoveries = this.changes.spread = this.changes.counters = true;
    }

    receipt(e) {
      const d = this.ensureDiscovery(e.id, e.t, e.from);
      const p = this.peer(e.peer);
      if (e.from) this.peer(e.from);
      this.counters.receipts += 1;
      // a peer's first delivery by gossip; a receipt inferred from its register ("presence") is none
      if (e.via !== "presence" && !d.delivered.has(p.id)) d.delivered.set(p.id, { t: e.t, wall: e.wall });
      this.reach(d, p.id, e.t, e.from || null);
      this.changes.touches.push({ kind: "received", id: d.id, peer: p.id, from: e.from || null });
      this.lastTouched = d.id;
    }

    adoption(e) {
      const d = this.ensureDiscovery(e.id, e.t, null);
      const p = this.peer(e.peer, e.tier);  // an Adoption may arrive before its author's Presence
      this.reach(d, p.id, e.t);
      if (!d.adopted.has(p.id)) {
        d.adopted.set(p.id, e.t);
        d.version += 1;
        this.counters.adoptions += 1;
      }
      if (finite(e.val_bpb) && (p.best === null || e.val_bpb < p.best)) p.best = e.val_bpb;
      if (e.state) {
        p.head = e.state;
        if (!this.states.has(e.state)) {
          this.states.set(e.state, { state: e.state, parent: d.state, via: d.id, val: e.val_bpb, test: null,
            peer: p.id, tier: p.tier, t: e.t, description: "adopted " + shortId(d.id) + " onto its own head",
            diff: null, baseline: false, adoption: true });
        }
      }
      if (d.tier && p.tier && p.tier !== "unknown" && p.tier !== d.tier && finite(e.val_bpb)) {
        // a discovery carried over to another tier counts for that tier once measured there
        this.offerBest(p.tier, { val: e.val_bpb, test: null, state: e.state || d.state, peer: d.peer || p.id,
          t: e.t, discovery: d.id });
      }
      this.changes.touches.push({ kind: "adopted", id: d.id, peer: p.id, from: null });
      this.lastTouched = d.id;
      this.changes.discoveries = this.changes.spread = this.changes.counters = true;
    }

    reject(e) {
      if (e.peer) this.peer(e.peer);
      this.counters.rejected += 1;
      this.changes.touches.push({ kind: "reject", id: null, peer: e.peer, from: e.from || null });
      this.changes.counters = true;
    }

    // --- where the swarm stands -----------------------------------------------------------

    offerBest(tier, candidate) {
      if (!finite(candidate.val)) return;
      const cur = this.best.get(tier);
      const tie = cur && Math.abs(candidate.val - cur.val) <= 1e-12;
      const better = !cur || (!tie && candidate.val < cur.val) || (tie && candidate.state && cur.state &&
        candidate.state < cur.state); // ties go to the lower state hash, as the swarm's register does
      if (!better) return;
      this.best.set(tier, Object.assign({ tier }, candidate));
      if (!this.trajectory.has(tier)) this.trajectory.set(tier, []);
      this.trajectory.get(tier).push([candidate.t, candidate.val]);
      this.changes.leaderboard = this.changes.trajectory = true;
    }

    /** The chain of states that led to a tier's best, oldest first. */
    lineage(tier) {
      const best = this.best.get(tier);
      const chain = [];
      if (!best || !best.state) return { chain, missingParent: null };
      const seen = new Set();
      let cur = best.state;
      let missingParent = null;
      while (cur && !seen.has(cur) && chain.length < 500) {
        seen.add(cur);
        const s = this.states.get(cur);
        if (!s) { missingParent = chain.length ? cur : null; break; }
        chain.push(s);
        cur = s.parent;
      }
      chain.reverse();
      return { chain, missingParent };
    }

    apply(e) {
      if (!e || typeof e !== "object") return;
      const handler = HANDLERS[e.type];
      if (typeof e.t === "number" && e.t > this.t) this.t = e.t;
      this.applied += 1;
      if (handler) handler.call(this, e);
      this.counters.peers = this.alive;
      this.counters.links = this.links.size;
    }
  }

  M.addMethods(Swarm, M.SwarmSpread, M.SwarmCredit);

  const HANDLERS = {
    join: Swarm.prototype.join, leave: Swarm.prototype.leave, link: Swarm.prototype.link,
    unlink: Swarm.prototype.unlink, experiment: Swarm.prototype.experiment,
    discovery: Swarm.prototype.discovery, receipt: Swarm.prototype.receipt,
    adoption: Swarm.prototype.adoption, reject: Swarm.prototype.reject, effect: Swarm.prototype.effect,
  };

  M.Swarm = Swarm;
})(window.SwarmModel);
