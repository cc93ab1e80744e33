/* The swarm model's spread (see model-base.js for its parts): which peers have each discovery
 * and since when, its spread curve, and its real gossip delivery by the wall clock.
 */
"use strict";

(function (M) {
  const { finite } = M;
  const DISCOVERY_COLORS = ["#ffd23f", "#ff6b6b", "#3ddc97", "#ff9f1c", "#c77dff", "#4cc9f0",
    "#f15bb5", "#a7c957", "#ff8fab", "#00bbf9"];

  /** The Swarm's methods on spread (model-swarm.js adds them to it). */
  class SwarmSpread {
    ensureDiscovery(id, t, author) {
      let d = this.discoveries.get(id);
      if (!d) {
        d = { id, peer: author || null, tier: null, state: id, parent: null, val: null, test: null,
          description: "", diff: "", changed: [], t, has: new Map(), adopted: new Map(), via: new Map(), curve: [], reached: 0, aliveAt: 0,
          wall: null, firstAuthor: null, delivered: new Map(),  // peer -> {t, wall} of its first receipt by gossip
          t50: null, t100: null, color: DISCOVERY_COLORS[this.discoveryOrder.length % DISCOVERY_COLORS.length],
          order: this.discoveryOrder.length, version: 0, placeholder: true };
        this.discoveries.set(id, d);
        this.discoveryOrder.push(id);
        if (author) this.reach(d, this.peer(author).id, t);
      }
      return d;
    }

    reach(d, peer, t, from) {
      if (d.has.has(peer)) return;
      d.has.set(peer, t);
      if (from) d.via.set(peer, from);
      d.version += 1;
      this.sample(d, t);
      this.changes.spread = this.changes.discoveries = true;
    }

    sample(d, t) {
      let reached = 0;
      for (const id of d.has.keys()) {
        const p = this.peers.get(id);
        if (p && p.alive) reached += 1;
      }
      const alive = Math.max(this.alive, 1);
      const share = Math.min(1, reached / alive);
      const dt = Math.max(0, t - d.t);
      d.reached = reached;
      d.aliveAt = alive;
      d.curve.push([dt, share]);
      if (share >= 0.5 && d.t50 === null) d.t50 = dt;
      if (share >= 1 && d.t100 === null) d.t100 = dt;
    }

    /** Real gossip delivery of `d` by the wall clock (a replay's virtual clock releases agents in
     *  windows, so its receipts all land at a window's end): the ms from the first discovery event
     *  of `d` to each alive peer's first receipt by gossip, sorted, and the ms by which 50 % / 100 %
     *  of the peers alive now had it (its author from 0 ms; null: not by gossip). null when the
     *  events carry no `wall` (older files) or no peer received it by gossip yet. */
    delivery(d) {
      if (!d || !finite(d.wall)) return null;
      const ms = [];
      for (const [id, r] of d.delivered) {
        const p = this.peers.get(id);
        if (id !== d.firstAuthor && p && p.alive && finite(r.wall)) ms.push(1000 * (r.wall - d.wall));
      }
      if (!ms.length) return null;
      ms.sort((a, b) => a - b);
      const author = this.peers.get(d.firstAuthor);
      const alive = Math.max(this.alive, 1), start = author && author.alive ? 1 : 0;
      const by = (share) => {
        const k = Math.ceil(share * alive) - start;  // the k-th delivery brings it to `share`
        return k <= 0 ? 0 : k <= ms.length ? ms[k - 1] : null;
      };
      return { ms, t50: by(0.5), t100: by(1) };
    }

    /** True when every gossip delivery of `d` so far came at one virtual time (within a second):
     *  its spread curve is one step that tells nothing of how fast gossip was. */
    collapsed(d) {
      const ts = [...d.delivered.values()].map((r) => r.t).filter(finite);
      return ts.length > 1 && Math.max(...ts) - Math.min(...ts) < 1;
    }

    /** Share of the peers alive now that have discovery `d`. */
    share(d) {
      let reached = 0;
      for (const id of d.has.keys()) {
        const p = this.peers.get(id);
        if (p && p.alive) reached += 1;
      }
      return { reached, alive: this.alive, share: this.alive ? reached / this.alive : 0 };
    }
  }

  M.SwarmSpread = SwarmSpread;
})(window.SwarmModel);
