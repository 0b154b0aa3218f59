/* The CPU emulation's deferred work (tests/gpu/emu; the design:
 * emu_runtime.cpp): every launch, copy, memset, collective and event record
 * is an op in a DAG whose edges are only the real orderings; ops run when the
 * host must see them, in a seeded random order among the streams (drain).
 * Stream captures record nodes instead; a graph replay enqueues them. */
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "emu_internal.h"

using namespace emu;

struct emu_event {
  bool recorded = false;
  OpP op;          /* eager record: done when this op is */
  std::string after; /* for traces: the last work on the stream when recorded */
  long cap_id = 0; /* recorded inside this capture */
  std::vector<int> tail;
  int stream = -1; /* the recording stream's id, for traces */
};

struct emu_graph {
  std::vector<Node> nodes;
};

static emu_stream g_legacy;
static std::set<emu_stream *> g_blocking; /* created without cudaStreamNonBlocking */
static std::vector<OpP> g_pending;
static Capture *g_capture;
static long g_capture_ids;
static long g_waits; /* cudaStreamWaitEvent calls so far */
static int g_stream_ids;

emu_stream *emu::S(cudaStream_t s) { return s ? s : &g_legacy; }

/* emu_fault_next_launch: when armed, the next launch's body is replaced by a
 * fault, which a call that waits for the device then reports (take_fault) */
static bool g_fault_armed;
static cudaError_t g_fault_pending = cudaSuccess;

cudaError_t emu::take_fault(void) {
  const cudaError_t e = g_fault_pending;
  g_fault_pending = cudaSuccess;
  return e == cudaSuccess ? e : set_err(e);
}

static void run_op(const OpP &o) {
  if (trace()) {
    std::string n = o->func ? kernel_name(o->func) : "";
    fprintf(stderr, "emu: run on stream %d: %s %s\n", o->stream, o->what, n.c_str());
  }
  if (o->fn) {
    if (in_kernel()) emu_die("device work started from inside a kernel");
    o->fn();
  }
  o->done = true;
  o->deps.clear(); /* nothing waits on what is done: free the chain */
  o->fn = nullptr;
}

/* Runs the pending ops the targets depend on (and the targets), one at a
 * time.  Each stream (each captured stream's lane, in a graph replay) gets
 * a random priority and the ready op of the highest runs; the priorities
 * are drawn again after 1 op in 32 on average.  So one stream often runs far
 * ahead of another, as far as the real dependencies allow, which is what
 * makes a missing wait show (a uniform pick among the ready ops keeps the
 * streams close together and hides most of them). */
void emu::drain(const std::vector<OpP> &targets) {
  std::vector<OpP> todo;
  std::set<Op *> seen;
  std::vector<OpP> stack;
  for (const OpP &t : targets)
    if (t && !t->done) stack.push_back(t);
  while (!stack.empty()) {
    OpP o = stack.back();
    stack.pop_back();
    if (o->done || !seen.insert(o.get()).second) continue;
    todo.push_back(o);
    for (const OpP &d : o->deps) stack.push_back(d);
  }
  std::vector<size_t> ready;
  std::map<int, uint64_t> prio;
  while (!todo.empty()) {
    ready.clear();
    if (rng_below(32) == 0) prio.clear();
    uint64_t best = 0;
    for (size_t i = 0; i < todo.size(); i++) {
      bool ok = true;
      for (const OpP &d : todo[i]->deps) ok = ok && d->done;
      if (!ok) continue;
      auto pr = prio.find(todo[i]->stream);
      const uint64_t p = pr != prio.end() ? pr->second : (prio[todo[i]->stream] = rng_next() | 1);
      if (p > best) ready.clear(), best = p;
      if (p == best) ready.push_back(i);
    }
    if (ready.empty()) emu_die("internal: pending ops wait on each other");
    const size_t k = ready[rng_below(ready.size())];
    OpP o = todo[k];
    todo[k] = todo.back();
    todo.pop_back();
    run_op(o);
  }
  g_pending.erase(std::remove_if(g_pending.begin(), g_pending.end(), [](const OpP &o) { return o->done; }),
                  g_pending.end());
}

void emu::drain_all(void) { drain(std::vector<OpP>(g_pending)); }

static OpP new_op(std::function<void()> fn, const char *what, const void *func) {
  OpP o = std::make_shared<Op>();
  o->fn = std::move(fn);
  o->what = what;
  o->func = func;
  return o;
}

static void add_dep(const OpP &o, const OpP &d) {
  if (d && !d->done && d != o) o->deps.push_back(d);
}

/* appends an op to an eager stream */
static OpP enqueue(emu_stream *s, std::function<void()> fn, const char *what, const void *func = nullptr,
                   const std::vector<OpP> &extra = {}) {
  OpP o = new_op(std::move(fn), what, func);
  o->stream = s->id;
  add_dep(o, s->last);
  if (s == &g_legacy) {
    for (emu_stream *b : g_blocking) add_dep(o, b->last);
  } else if (s->blocking) {
    add_dep(o, g_legacy.last);
  }
  for (const OpP &d : extra) add_dep(o, d);
  s->last = o;
  g_pending.push_back(o);
  return o;
}

cudaError_t emu::unsafe_call(void) {
  if (g_capture && g_capture->mode == cudaStreamCaptureModeGlobal) {
    g_capture->invalid = true;
    return cudaErrorStreamCaptureUnsupported;
  }
  return cudaSuccess;
}

cudaError_t emu::submit(cudaStream_t hs, std::function<void()> fn, const char *what, const void *func, OpP *out) {
  emu_stream *s = S(hs);
  if (s->cap) {
    Capture *c = s->cap;
    if (c->invalid) return set_err(cudaErrorStreamCaptureInvalidated);
    c->nodes.push_back(Node{std::move(fn), s->tail, what, func, s->id});
    s->tail.assign(1, (int)c->nodes.size() - 1);
    return cudaSuccess;
  }
  if (s == &g_legacy)
    for (emu_stream *b : g_blocking)
      if (b->cap) { /* the legacy stream would wait on a capturing blocking stream */
        b->cap->invalid = true;
        return set_err(cudaErrorStreamCaptureImplicit);
      }
  OpP o = enqueue(s, std::move(fn), what, func);
  if (out) *out = o;
  return cudaSuccess;
}

void emu_submit(cudaStream_t s, std::function<void()> fn) { (void)submit(s, std::move(fn), "host function"); }

void emu_enqueue(cudaStream_t s, dim3 grid, dim3 block, std::function<void()> body, const void *func) {
  const unsigned long long nt = (unsigned long long)block.x * block.y * block.z;
  if (nt < 1 || nt > 1024 || block.z > 64 || grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.x > 0x7fffffffu ||
      grid.y > 65535 || grid.z > 65535) {
    set_err(cudaErrorInvalidConfiguration);
    return;
  }
  if (in_kernel()) emu_die("kernel launch from inside a kernel");
  const KernelRes *r = func ? kernel_res(func, nullptr) : nullptr;
  if (r && emu_occupancy(r->regs, r->smem, (int)nt, 0) == 0) { /* more registers than an SM has */
    set_err(cudaErrorLaunchOutOfResources);
    return;
  }
  if (g_fault_armed) {
    g_fault_armed = false;
    submit(s, []() { g_fault_pending = cudaErrorIllegalAddress; }, "kernel (injected fault)", func);
    return;
  }
  submit(s, [grid, block, body]() { run_grid(grid, block, body); }, "kernel", func);
}

void emu_fault_next_launch(void) { g_fault_armed = true; }


extern "C" {

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
  *s = new emu_stream;
  (*s)->id = ++g_stream_ids;
  (*s)->blocking = !(flags & cudaStreamNonBlocking);
  if ((*s)->blocking) g_blocking.insert(*s);
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (!s) return set_err(cudaErrorInvalidValue);
  /* its pending work still runs; the ops keep their own references */
  g_blocking.erase(s);
  delete s;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (S(s)->cap) {
    S(s)->cap->invalid = true;
    return set_err(cudaErrorStreamCaptureUnsupported);
  }
  const cudaError_t u = unsafe_call();
  if (u != cudaSuccess) return set_err(u);
  drain({S(s)->last});
  return take_fault();
}

cudaError_t cudaDeviceSynchronize(void) {
  if (g_capture) { /* would wait for the capturing stream */
    g_capture->invalid = true;
    return set_err(cudaErrorStreamCaptureUnsupported);
  }
  drain_all();
  return take_fault();
}

cudaError_t cudaEventCreate(cudaEvent_t *e) {
  *e = new emu_event;
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
  (void)flags;
  return cudaEventCreate(e);
}

cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t hs) {
  emu_stream *s = S(hs);
  e->recorded = true;
  e->stream = s->id;
  e->tail.clear();
  e->op = nullptr;
  e->after.clear();
  if (trace() || drop_wait()) {
    if (s->cap && !s->tail.empty()) {
      const Node &n = s->cap->nodes[(size_t)s->tail.back()];
      e->after = std::string(n.what) + " " + (n.func ? kernel_name(n.func) : "");
    } else if (!s->cap && s->last) {
      e->after = std::string(s->last->what) + " " + (s->last->func ? kernel_name(s->last->func) : "");
    }
  }
  if (s->cap) {
    if (s->cap->invalid) return set_err(cudaErrorStreamCaptureInvalidated);
    e->cap_id = s->cap->id;
    e->tail = s->tail;
    return cudaSuccess;
  }
  e->cap_id = 0;
  OpP o;
  const cudaError_t r = submit(hs, nullptr, "event record", nullptr, &o);
  e->op = o;
  return r;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (e->cap_id) return set_err(cudaErrorIllegalState);
  drain({e->op});
  return take_fault();
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
  (void)a, (void)b;
  *ms = 1.0f;
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t hs, cudaEvent_t e, unsigned flags) {
  (void)flags;
  emu_stream *s = S(hs);
  const long k = ++g_waits, drop = drop_wait();
  if (trace() || k == drop)
    fprintf(stderr,
            "emu: cudaStreamWaitEvent #%ld: %s stream %d waits on event %p, recorded on stream %d%s after: %s%s\n", k,
            s->cap ? "capturing" : "eager", s->id, (void *)e, e->stream,
            e->cap_id ? " in a capture" : "", e->after.empty() ? "(nothing)" : e->after.c_str(),
            k == drop ? " -- DROPPED (TPD_EMU_DROP_WAIT)" : "");
  if (k == drop) return cudaSuccess;
  if (!e->recorded) return cudaSuccess; /* nothing to wait for */
  if (!e->cap_id) {
    if (s->cap) { /* waiting inside a capture on work outside it */
      s->cap->invalid = true;
      return set_err(cudaErrorStreamCaptureIsolation);
    }
    enqueue(s, nullptr, "event wait", nullptr, {e->op});
    return cudaSuccess;
  }
  Capture *c = g_capture;
  if (!c || c->id != e->cap_id) return set_err(cudaErrorStreamCaptureIsolation);
  if (c->invalid) return set_err(cudaErrorStreamCaptureInvalidated);
  if (s == &g_legacy) emu_die("the legacy stream waits on a captured event");
  if (!s->cap) { /* fork: s joins the capture */
    s->cap = c;
    s->tail = e->tail;
    c->members.push_back(s);
    return cudaSuccess;
  }
  for (int n : e->tail)
    if (std::find(s->tail.begin(), s->tail.end(), n) == s->tail.end()) s->tail.push_back(n);
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
  if (!s || s->cap || g_capture) return set_err(cudaErrorIllegalState);
  g_capture = new Capture;
  g_capture->id = ++g_capture_ids;
  g_capture->mode = mode;
  g_capture->origin = s;
  g_capture->members.push_back(s);
  s->cap = g_capture;
  s->tail.clear();
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
  *g = NULL;
  if (!s || !s->cap || s->cap->origin != s) return set_err(cudaErrorIllegalState);
  Capture *c = s->cap;
  cudaError_t e = c->invalid ? cudaErrorStreamCaptureInvalidated : cudaSuccess;
  if (e == cudaSuccess) { /* every node must lead into the origin stream's last nodes */
    std::vector<char> joined(c->nodes.size(), 0);
    std::vector<int> stack(s->tail);
    while (!stack.empty()) {
      const int n = stack.back();
      stack.pop_back();
      if (joined[(size_t)n]) continue;
      joined[(size_t)n] = 1;
      for (int d : c->nodes[(size_t)n].deps) stack.push_back(d);
    }
    if (std::find(joined.begin(), joined.end(), 0) != joined.end()) e = cudaErrorStreamCaptureUnjoined;
  }
  for (emu_stream *x : c->members) {
    x->cap = nullptr;
    x->tail.clear();
  }
  if (e == cudaSuccess) {
    *g = new emu_graph;
    (*g)->nodes = std::move(c->nodes);
  }
  delete c;
  g_capture = nullptr;
  return e == cudaSuccess ? cudaSuccess : set_err(e);
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *st) {
  *st = !s || !s->cap ? cudaStreamCaptureStatusNone
                      : s->cap->invalid ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t g, unsigned long long flags) {
  (void)flags;
  *exec = new emu_graph(*g);
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t g) {
  delete g;
  return cudaSuccess;
}

/* the graph's nodes as ops: after the stream's earlier work, with the
 * captured edges; the stream's next op waits for all of them */
cudaError_t cudaGraphLaunch(cudaGraphExec_t g, cudaStream_t hs) {
  emu_stream *s = S(hs);
  if (s->cap) emu_die("graph launch inside a capture (not used by the backend)");
  OpP start = enqueue(s, nullptr, "graph start");
  std::vector<OpP> ops(g->nodes.size());
  for (size_t i = 0; i < g->nodes.size(); i++) {
    const Node &n = g->nodes[i];
    ops[i] = new_op(n.fn, n.what, n.func);
    ops[i]->stream = n.stream;
    add_dep(ops[i], start);
    for (int d : n.deps) add_dep(ops[i], ops[(size_t)d]);
    g_pending.push_back(ops[i]);
  }
  enqueue(s, nullptr, "graph end", nullptr, ops);
  return cudaSuccess;
}

/* Queries wait: the emulator runs queued work only when something waits
 * for it, so a query that did not would never see it complete
 * (comm/comm_nccl.c polls its warm-up stream). */
cudaError_t cudaStreamQuery(cudaStream_t s) { return cudaStreamSynchronize(s); }
cudaError_t cudaEventQuery(cudaEvent_t e) { return cudaEventSynchronize(e); }

}  // extern "C"
