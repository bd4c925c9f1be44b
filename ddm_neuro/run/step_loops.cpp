// Compiled step loops of the torch back end: the rate network (Euler-Maruyama, Ito) and its LIF
// spiking network (exact integration), many steps per call, float64, OpenMP over trials or neurons.
//
// Built and loaded by ddm_neuro/run/compiled.py (g++ -O3 -fopenmp, plain C ABI through ctypes).
// The scheme is the one documented in ddm_neuro/run/rate.py and ddm_neuro/spiking/simulator.py,
// step for step; the per-neuron spike loop replaces the vectorised "while any neuron spiked" loop.
//
// Noise: each trial draws from its own streams, one per block of BLOCK neurons plus one for the
// shared (latent) noise: xoshiro256+ uniforms, Marsaglia's polar method for normals. A stream
// belongs to (trial, block), never to a thread, so a seed gives the same run at any thread count
// and any number of steps per call.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef int64_t i64;
typedef uint64_t u64;

#ifdef DDM_VECMATH
// glibc's vector math (libmvec, glibc >= 2.35) declares these SIMD variants only under -ffast-math,
// whose finite-math assumption would break the loops' handling of diverged (NaN) trials. Declared
// here instead, the loops below vectorise with the same float64 results to ~1 ulp.
extern "C" {
__attribute__((__simd__("notinbranch"))) double log1p(double) throw();
__attribute__((__simd__("notinbranch"))) double tanh(double) throw();
}
#endif

static const i64 BLOCK = 1024;
static const i64 MAX_SPIKES_PER_STEP = 64;

// ------------------------------------------------------------------------------------------ noise
// A stream is 6 words: xoshiro256+ state (4), a spare normal (bits) and whether it is held.
static inline u64 rotl(u64 x, int k) { return (x << k) | (x >> (64 - k)); }

static inline u64 splitmix64(u64 &s) {
    u64 z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline double uniform(u64 *s) {  // [0, 1), 53 bits
    const u64 result = s[0] + s[3];
    const u64 t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return (double)(result >> 11) * (1.0 / 9007199254740992.0);  // 2^-53
}

static inline double normal(u64 *s) {
    if (s[5]) {
        double spare;
        std::memcpy(&spare, &s[4], sizeof spare);
        s[5] = 0;
        return spare;
    }
    double a, b, q;
    do {
        a = 2.0 * uniform(s) - 1.0;
        b = 2.0 * uniform(s) - 1.0;
        q = a * a + b * b;
    } while (q >= 1.0 || q == 0.0);
    const double f = std::sqrt(-2.0 * std::log(q) / q);
    const double spare = b * f;
    std::memcpy(&s[4], &spare, sizeof spare);
    s[5] = 1;
    return a * f;
}

extern "C" i64 ddm_block_size() { return BLOCK; }

// Seed n streams (6 words each) from one key: stream i gets splitmix64 of (key, i).
extern "C" void ddm_seed_streams(u64 key, i64 n, u64 *states) {
    for (i64 i = 0; i < n; ++i) {
        u64 sm = key ^ (0xD1B54A32D192ED03ULL * (u64)(i + 1));
        u64 *s = states + 6 * i;
        for (int k = 0; k < 4; ++k) s[k] = splitmix64(sm);
        s[4] = 0;
        s[5] = 0;
    }
}

// Fill out[n] with standard normals from stream 0 of states (for the tests of the generator).
extern "C" void ddm_normals(u64 *state, i64 n, double *out) {
    for (i64 i = 0; i < n; ++i) out[i] = normal(state);
}

// ------------------------------------------------------------------------------------------ spikes
struct Spikes {
    std::vector<std::vector<double>> t;
    std::vector<std::vector<i64>> i;
};

extern "C" void *ddm_spikes_new(i64 slots) {
    Spikes *sp = new Spikes();
    sp->t.resize(slots);
    sp->i.resize(slots);
    return sp;
}

extern "C" void ddm_spikes_free(void *p) { delete (Spikes *)p; }

extern "C" i64 ddm_spikes_count(void *p) {
    Spikes *sp = (Spikes *)p;
    i64 n = 0;
    for (auto &v : sp->t) n += (i64)v.size();
    return n;
}

// Copy every slot's spikes, slot after slot, into t and i, and empty the slots.
extern "C" void ddm_spikes_take(void *p, double *t, i64 *idx) {
    Spikes *sp = (Spikes *)p;
    i64 k = 0;
    for (size_t s = 0; s < sp->t.size(); ++s) {
        std::memcpy(t + k, sp->t[s].data(), sp->t[s].size() * sizeof(double));
        std::memcpy(idx + k, sp->i[s].data(), sp->i[s].size() * sizeof(i64));
        k += (i64)sp->t[s].size();
        sp->t[s].clear();
        sp->i[s].clear();
    }
}

// ------------------------------------------------------------------------------------------ arguments
// Every field is 8 bytes wide (i64, double or a pointer), in this order: compiled.py mirrors it.
struct Args {
    i64 T, N, R, DZ, KIN, DS;          // trials, neurons, rank (rows of K), read-out rows, inputs, shared noise
    i64 spiking, neuron, factored;     // mode (0 rate, 1 LIF spikes); neuron (0 tanh, 1 lif); E (K q) or M q only
    i64 private_noise, remainder;      // private output noise; spiking: count the spikes' own noise out
    i64 step0, nsteps, n_sub, threads;
    double h, tau, time_scale, tau_m, tau_ref, act_scale;
    const double *E, *Kd, *D, *M, *B, *b, *EL, *na, *nc, *scale, *center, *fano;  // fano null: regular firing
    const double *u_steps;             // (nsteps, KIN) input at each step of this call, or null
    double *u_prev;                    // (KIN) the input before step0
    double *x, *v, *ref, *drive;       // (T, N)
    double *out;                       // (T, n_rec, DZ)
    i64 n_rec;
    u64 *streams;                      // (T, n_blocks + 1, 6)
    i64 *n_spikes;                     // (T * threads)
    void *spikes;                      // Spikes* with T * threads slots, or null
    i64 *overflow;                     // set to 1 when a neuron hit MAX_SPIKES_PER_STEP
};

// Work space of one thread.
struct Scratch {
    std::vector<double> q, part, sh;
    explicit Scratch(const Args &a) : q(a.N), part(a.R + a.DZ), sh(a.DS) {}
};

// Phase A of step g for neurons [i0, i1) of trial t: each neuron's output q (rate with noise, or
// decayed spikes plus noise, over tau) and the partial decoded sum K q over the range into part[0:R].
static void phase_a(const Args &a, i64 t, i64 g, i64 i0, i64 i1, double *q, double *part, i64 slot) {
    const i64 N = a.N, nb = (N + BLOCK - 1) / BLOCK;
    double *x = a.x + t * N;
    u64 *streams = a.streams + 6 * t * (nb + 1);
    for (i64 k = 0; k < a.R; ++k) part[k] = 0.0;
    if (!a.spiking) {
        if (a.neuron == 0) {
#pragma omp simd
            for (i64 i = i0; i < i1; ++i) q[i] = ::tanh(x[i]);
        } else {
            const double tau_ref = a.tau_ref, tau_m = a.tau_m;
#pragma omp simd
            for (i64 i = i0; i < i1; ++i) {
                const double j = x[i] - 1.0;
                q[i] = j > 0 ? 1.0 / (tau_ref + tau_m * ::log1p(1.0 / j)) : 0.0;
            }
        }
        if (a.private_noise) {
            for (i64 i = i0; i < i1; ++i) {
                const double act = a.neuron == 0 ? 0.5 * (1.0 + q[i]) : q[i] * a.act_scale;
                q[i] += std::sqrt((a.nc[i] + a.na[i] * act) / a.h) * normal(streams + 6 * (i / BLOCK));
            }
        }
        if (a.factored) {
            for (i64 k = 0; k < a.R; ++k) {
                const double *Kk = a.Kd + k * N;
                double acc = 0.0;
#pragma omp simd reduction(+ : acc)
                for (i64 i = i0; i < i1; ++i) acc += Kk[i] * q[i];
                part[k] = acc;
            }
        }
    } else {
        double *v = a.v + t * N, *ref = a.ref + t * N;
        const double h = a.h, tau_m = a.tau_m, tau_ref = a.tau_ref, tau = a.tau;
        const double e_m = std::exp(-h / tau_m);
        i64 count = 0;
        Spikes *sp = (Spikes *)a.spikes;
        if (a.private_noise) {  // the rates the noise needs, vectorised, held in q until q is written
            const double tau_ref = a.tau_ref, tau_m = a.tau_m;
#pragma omp simd
            for (i64 i = i0; i < i1; ++i) {
                const double j = x[i] - 1.0;
                q[i] = j > 0 ? 1.0 / (tau_ref + tau_m * ::log1p(1.0 / j)) : 0.0;
            }
        }
        for (i64 i = i0; i < i1; ++i) {
            const double xi = x[i];
            double rem = h - ref[i];
            if (rem < 0) rem = 0;
            ref[i] = ref[i] - h > 0 ? ref[i] - h : 0.0;
            double vi = v[i], qi = 0.0;
            for (i64 n = 0;; ++n) {
                const double v_end = xi + (vi - xi) * (rem == h ? e_m : std::exp(-rem / tau_m));
                if (!(v_end >= 1.0 && rem > 0)) {
                    vi = v_end;
                    break;
                }
                if (n == MAX_SPIKES_PER_STEP) {  // far above threshold with no refractory time: stop, say so
                    *a.overflow = 1;
                    vi = 0.0;
                    break;
                }
                double tc = tau_m * std::log((xi - vi) / (xi - 1.0));
                if (!(tc > 0)) tc = 0.0;
                if (tc > rem) tc = rem;
                rem -= tc;                      // time left after the spike
                qi += std::exp(-rem / tau);     // decayed to the step's end
                ++count;
                if (sp) {
                    sp->t[slot].push_back((g * h + h - rem) / a.time_scale);
                    sp->i[slot].push_back(i + t * N);
                }
                vi = 0.0;
                const double used = rem < tau_ref ? rem : tau_ref;
                ref[i] = tau_ref - used;
                rem -= used;
                if (!(rem > 0)) break;
            }
            v[i] = vi;
            qi /= tau;
            if (a.private_noise) {
                double act, s2;
                const double r = q[i];
                act = r * a.act_scale;
                s2 = a.nc[i] + a.na[i] * act;
                if (a.remainder) {
                    if (a.fano) {
                        s2 -= a.fano[i] * r;
                    } else {  // regular firing over one SDE time unit: F r = f (1 - f) / T
                        const double nT = r * a.time_scale, frac = nT - std::floor(nT);
                        s2 -= frac * (1.0 - frac) / a.time_scale;
                    }
                    if (s2 < 0) s2 = 0.0;
                }
                qi += std::sqrt(s2 * h) / tau * normal(streams + 6 * (i / BLOCK));
            }
            q[i] = qi;
            if (a.factored && qi != 0.0)  // without noise only the neurons that fired
                for (i64 k = 0; k < a.R; ++k) part[k] += a.Kd[k * N + i] * qi;
        }
        a.n_spikes[slot] += count;
    }
}

// The input's step at step g for neurons [i0, i1) of trial t: x jumps by B (u_new - u_old) at once
// (the feed-forward path) and the drive becomes b + B u_new. First thing in a step.
static void input_jump(const Args &a, i64 t, i64 g, i64 i0, i64 i1) {
    double *x = a.x + t * a.N, *drive = a.drive + t * a.N;
    {
        const double *un = a.u_steps + (g - a.step0) * a.KIN;
        const double *up = g == a.step0 ? a.u_prev : un - a.KIN;
        bool changed = false;
        for (i64 c = 0; c < a.KIN; ++c) changed |= un[c] != up[c];
        if (changed) {  // feed-forward: x jumps with u
            for (i64 i = i0; i < i1; ++i) {
                const double *Bi = a.B + i * a.KIN;
                double jump = 0.0, d = 0.0;
                for (i64 c = 0; c < a.KIN; ++c) {
                    jump += (un[c] - up[c]) * Bi[c];
                    d += un[c] * Bi[c];
                }
                x[i] += jump;
                drive[i] = a.b[i] + d;
            }
        }
    }
}

// Phase B of step g for neurons [i0, i1) of trial t: x's update from the decoded sum s (R), the
// full q (dense M) and the shared noise sh (DS).
static void phase_b(const Args &a, i64 t, i64 g, i64 i0, i64 i1, const double *q, const double *s,
                    const double *sh) {
    const i64 N = a.N, R = a.R;
    double *x = a.x + t * N, *drive = a.drive + t * N;
    (void)g;
    const double ah = a.h / a.tau, e_syn = std::exp(-a.h / a.tau);
    for (i64 i = i0; i < i1; ++i) {
        double rec = 0.0;
        if (a.factored) {
            const double *Ei = a.E + i * R;
            for (i64 k = 0; k < R; ++k) rec += Ei[k] * s[k];
        }
        if (a.M) {
            const double *Mi = a.M + i * N;
            double m = 0.0;
            for (i64 j = 0; j < N; ++j) m += Mi[j] * q[j];
            rec = a.factored ? rec + m : m;
        }
        double xi = x[i];
        if (a.spiking)
            xi = drive[i] + (xi - drive[i]) * e_syn + rec;
        else
            xi = xi + ah * ((-xi + rec) + drive[i]);
        if (a.DS) {
            const double *Li = a.EL + i * a.DS;
            double e = 0.0;
            for (i64 c = 0; c < a.DS; ++c) e += Li[c] * sh[c];
            xi += e;
        }
        x[i] = xi;
    }
}

static void shared_noise(const Args &a, i64 t, double *sh) {
    const i64 nb = (a.N + BLOCK - 1) / BLOCK;
    u64 *stream = a.streams + 6 * (t * (nb + 1) + nb);
    const double sq = std::sqrt(a.h);
    for (i64 c = 0; c < a.DS; ++c) sh[c] = sq * normal(stream);
}

// The read-out D x over [i0, i1) of trial t into part[0:DZ].
static void readout_part(const Args &a, i64 t, i64 i0, i64 i1, double *part) {
    const double *x = a.x + t * a.N;
    for (i64 j = 0; j < a.DZ; ++j) {
        const double *Dj = a.D + j * a.N;
        double s = 0.0;
        for (i64 i = i0; i < i1; ++i) s += Dj[i] * x[i];
        part[j] = s;
    }
}

static inline void record(const Args &a, i64 t, i64 k, const double *y) {
    double *o = a.out + (t * a.n_rec + k) * a.DZ;
    for (i64 j = 0; j < a.DZ; ++j) o[j] = y[j] * a.scale[j] + a.center[j];
}

// All steps of one trial on one thread.
static void run_trial(const Args &a, i64 t, Scratch &w, i64 slot) {
    const i64 N = a.N;
    double *s = w.part.data();
    for (i64 g = a.step0; g < a.step0 + a.nsteps; ++g) {
        if (a.u_steps) input_jump(a, t, g, 0, N);
        phase_a(a, t, g, 0, N, w.q.data(), s, slot);
        if (a.DS) shared_noise(a, t, w.sh.data());
        phase_b(a, t, g, 0, N, w.q.data(), s, w.sh.data());
        if ((g + 1) % a.n_sub == 0) {
            double *y = w.part.data() + a.R;
            readout_part(a, t, 0, N, y);
            record(a, t, (g + 1) / a.n_sub, y);
        }
    }
}

#ifdef _OPENMP
// All steps of one trial, its neurons split over the threads in whole noise blocks. Partial sums
// are added in thread order, so a thread count gives one result.
static void run_trial_split(const Args &a, i64 t, int nt) {
    const i64 N = a.N, nb = (N + BLOCK - 1) / BLOCK, W = a.R + a.DZ;
    std::vector<double> q(N), parts(2 * (size_t)nt * W), sh(a.DS);
#pragma omp parallel num_threads(nt)
    {
        const int id = omp_get_thread_num(), n = omp_get_num_threads();
        const i64 i0 = std::min(N, (nb * id / n) * BLOCK), i1 = std::min(N, (nb * (id + 1) / n) * BLOCK);
        std::vector<double> s(a.R), y(a.DZ);
        for (i64 g = a.step0; g < a.step0 + a.nsteps; ++g) {
            double *buf = parts.data() + (size_t)((g & 1) * nt) * W;
            if (a.u_steps) input_jump(a, t, g, i0, i1);
            phase_a(a, t, g, i0, i1, q.data(), buf + id * W, t * a.threads + id);
            if (id == 0 && a.DS) shared_noise(a, t, sh.data());
#pragma omp barrier
            for (i64 k = 0; k < a.R; ++k) {
                double acc = 0.0;
                for (int p = 0; p < n; ++p) acc += buf[p * W + k];
                s[k] = acc;
            }
            phase_b(a, t, g, i0, i1, q.data(), s.data(), sh.data());
            if ((g + 1) % a.n_sub == 0) {
                readout_part(a, t, i0, i1, buf + id * W + a.R);
#pragma omp barrier
                if (id == 0) {
                    for (i64 j = 0; j < a.DZ; ++j) {
                        double acc = 0.0;
                        for (int p = 0; p < n; ++p) acc += buf[p * W + a.R + j];
                        y[j] = acc;
                    }
                    record(a, t, (g + 1) / a.n_sub, y.data());
                }
            }
#pragma omp barrier
        }
    }
}
#endif

// Advance every trial by nsteps steps from step0 (a rate or spiking network, as a.spiking says).
extern "C" int ddm_steps(const Args *args) {
    const Args &a = *args;
    int nt = (int)(a.threads < 1 ? 1 : a.threads);
#ifdef _OPENMP
    if (nt > 1 && a.T >= nt) {
#pragma omp parallel num_threads(nt)
        {
            Scratch w(a);
#pragma omp for schedule(static, 1)
            for (i64 t = 0; t < a.T; ++t) run_trial(a, t, w, t * a.threads);
        }
        return 0;
    }
    if (nt > 1 && a.N >= 2 * BLOCK) {
        for (i64 t = 0; t < a.T; ++t) run_trial_split(a, t, (int)std::min<i64>(nt, (a.N + BLOCK - 1) / BLOCK));
        return 0;
    }
#endif
    Scratch w(a);
    for (i64 t = 0; t < a.T; ++t) run_trial(a, t, w, t * a.threads);
    return 0;
}

// ------------------------------------------------------------------------------------------ coordinated
// The spike-coordinated network of ddm_neuro/spiking/coordinated.py, many steps per call, one OpenMP
// thread per trial. Per trial: the read-out xh (d, centred SDE coordinates) and the read-out error e (d).
// A step of h SDE units (dt = h * time_scale seconds):
//   every `hold` steps: z = xh + center, x = A^T z + x0 + Bx^T u, r = tanh(x),
//                       command c = Kt^T r - ct z + cst + DB u (per SDE unit), times h;
//                       noise: C = Ks diag(na act(x) + nc) Ks^T + LL (per SDE unit), chol(C h)
//   e  += command h + chol(C h) xi + (1 - a) xh - lk e      (xi: d standard normals)
//   xh *= a                                                 (a = exp(-dt / tau): the read-out's filter)
//   j = argmax_j (D_j . e - thr_j); if positive: neuron j spikes, e -= D_j, xh += D_j   (one spike per step)
// The fast rank-d inhibition -D^T D is the "e -= D_j" (every membrane D_i . e sees it at once).
// Noise as spikes (noise_spikes = 1): instead of chol(C h) xi entering e, neuron j fires at random with
// probability lambda_j per step, lambda_j = D_j^T B D_j (clipped at 0) with B solving
// sum_j lambda_j D_j D_j^T = C h (Pinv: the inverse of that linear map on symmetric B, in the coordinates
// (p, q), p >= q, row-major); such a spike moves xh by D_j and leaves e as it is (the noise enters the
// read-out as the spike itself), and e -= sum_j lambda_j D_j every step (the noise spikes' mean).
struct CoordArgs {
    i64 T, N, d, M, k, n_int, sub, hold, threads, noisy, max_spikes, step0, noise_spikes;
    double h, a, lk, ct, dt_s;
    const double *D, *thr, *A, *x0, *Kt, *cst, *Bx, *DB, *center, *na, *nc, *Ks, *LL, *u, *Pinv;
    double *e, *xh, *cmd, *Lc;
    i64 *cnt;
    u64 *streams;
    double *out, *oute;   // oute: the error e at the end of each interval, or null
    i64 *n_spikes;
    double *spk_t;
    i64 *spk_i, *spk_n;
};

// Command and noise factor of one trial at its read-out (see above); work holds 2 M doubles. A, Kt and Ks are
// stored d x M, Bx k x M (rows contiguous over the basis units, so the loops over m vectorise).
static void coord_command(const CoordArgs &a, const double *xh, const double *u, double *cmd, double *Lc,
                          double *work) {
    const i64 d = a.d, M = a.M, k = a.k;
    double z[16];
    for (i64 q = 0; q < d; q++) z[q] = xh[q] + a.center[q];
    double *r = work, *s2 = work + M;
    for (i64 m = 0; m < M; m++) r[m] = a.x0[m];
    for (i64 q = 0; q < d; q++) {
        const double zq = z[q], *Aq = a.A + q * M;
        for (i64 m = 0; m < M; m++) r[m] += Aq[m] * zq;
    }
    for (i64 c = 0; c < k; c++) {
        const double uc = u[c], *Bc = a.Bx + c * M;
        for (i64 m = 0; m < M; m++) r[m] += Bc[m] * uc;
    }
    for (i64 m = 0; m < M; m++) r[m] = ::tanh(r[m]);
    for (i64 q = 0; q < d; q++) {
        double c = a.cst[q] - a.ct * z[q];
        const double *Kq = a.Kt + q * M;
        for (i64 m = 0; m < M; m++) c += Kq[m] * r[m];
        for (i64 c2 = 0; c2 < k; c2++) c += a.DB[q * k + c2] * u[c2];
        cmd[q] = c * a.h;
    }
    if (!a.noisy) return;
    for (i64 m = 0; m < M; m++) s2[m] = a.na[m] * 0.5 * (1.0 + r[m]) + a.nc[m];
    double C[256];
    for (i64 p = 0; p < d; p++)
        for (i64 q = 0; q <= p; q++) {
            double c = a.LL[p * d + q];
            const double *Kp = a.Ks + p * M, *Kq = a.Ks + q * M;
            for (i64 m = 0; m < M; m++) c += Kp[m] * s2[m] * Kq[m];
            C[p * d + q] = c * a.h;
        }
    // Cholesky, lower triangular; a pivot that is not positive (a direction without noise) gives a zero column
    for (i64 p = 0; p < d; p++) {
        for (i64 q = 0; q <= p; q++) {
            double s = C[p * d + q];
            for (i64 l = 0; l < q; l++) s -= Lc[p * d + l] * Lc[q * d + l];
            if (p == q) Lc[p * d + p] = s > 0.0 ? std::sqrt(s) : 0.0;
            else Lc[p * d + q] = Lc[q * d + q] > 0.0 ? s / Lc[q * d + q] : 0.0;
        }
        for (i64 q = p + 1; q < d; q++) Lc[p * d + q] = 0.0;
    }
}

// Noise spikes of one trial: lambda (N), their mean per step m (d); returns their total probability per step.
static double noise_rates(const CoordArgs &a, const double *Lc, double *lam, double *m) {
    const i64 d = a.d, N = a.N;
    double rhs[136], b[136];   // d (d + 1) / 2 <= 136 for d <= 16
    i64 n = 0;
    for (i64 p = 0; p < d; p++)
        for (i64 q = 0; q <= p; q++, n++) {
            double c = 0.0;
            for (i64 l = 0; l < d; l++) c += Lc[p * d + l] * Lc[q * d + l];
            rhs[n] = c;
        }
    for (i64 r = 0; r < n; r++) {
        double acc = 0.0;
        for (i64 c = 0; c < n; c++) acc += a.Pinv[r * n + c] * rhs[c];
        b[r] = acc;
    }
    double total = 0.0;
    for (i64 q = 0; q < d; q++) m[q] = 0.0;
    for (i64 j = 0; j < N; j++) {
        double l = 0.0;
        i64 r = 0;
        for (i64 p = 0; p < d; p++)
            for (i64 q = 0; q <= p; q++, r++)
                l += (p == q ? 1.0 : 2.0) * b[r] * a.D[p * N + j] * a.D[q * N + j];
        lam[j] = l > 0.0 ? l : 0.0;
        total += lam[j];
        for (i64 q = 0; q < d; q++) m[q] += lam[j] * a.D[q * N + j];
    }
    return total;
}

// Run n_int record intervals of `sub` steps each; out[t, i] is xh + center at the end of interval i.
// Returns 0, or 1 when d > 16 (refused).
extern "C" int ddm_coordinated(const CoordArgs *ap) {
    const CoordArgs &a = *ap;
    if (a.d > 16) return 1;
#pragma omp parallel for schedule(static, 1) num_threads(a.threads)
    for (i64 t = 0; t < a.T; t++) {
        const i64 d = a.d, N = a.N;
        const bool spikes_noise = a.noisy && a.noise_spikes;
        std::vector<double> work(2 * a.M + a.N + (spikes_noise ? a.N : 0));
        double *V = work.data() + 2 * a.M, *lam = V + a.N;
        double *e = a.e + t * d, *xh = a.xh + t * d, *cmd = a.cmd + t * d, *Lc = a.Lc + t * d * d;
        u64 *st = a.streams + 6 * t;
        i64 cnt = a.cnt[t], nsp = a.n_spikes[t];
        double xi[16], mean[16] = {0.0}, ptot = 0.0;
        if (spikes_noise && cnt % a.hold != 0) ptot = noise_rates(a, Lc, lam, mean);   // held from the last call
        for (i64 i = 0; i < a.n_int; i++) {
            const double *u = a.u + i * a.k;
            for (i64 s = 0; s < a.sub; s++) {
                if (cnt % a.hold == 0) {
                    coord_command(a, xh, u, cmd, Lc, work.data());
                    if (spikes_noise) ptot = noise_rates(a, Lc, lam, mean);
                }
                cnt++;
                if (a.noisy && !spikes_noise)
                    for (i64 q = 0; q < d; q++) xi[q] = normal(st);
                for (i64 p = 0; p < d; p++) {
                    double n = 0.0;
                    if (spikes_noise)
                        n = -mean[p];
                    else if (a.noisy)
                        for (i64 q = 0; q <= p; q++) n += Lc[p * d + q] * xi[q];
                    e[p] += cmd[p] + n + (1.0 - a.a) * xh[p] - a.lk * e[p];
                    xh[p] *= a.a;
                }
                if (spikes_noise && ptot > 0.0) {
                    // K draws of probability ptot / K each (K = ceil(ptot)): neuron j with probability lambda_j / K
                    const i64 K = ptot > 1.0 ? (i64)std::ceil(ptot) : 1;
                    for (i64 r = 0; r < K; r++) {
                        double x = uniform(st) * K;
                        if (x >= ptot) continue;
                        i64 j = 0;
                        for (; j < N - 1; j++) { x -= lam[j]; if (x < 0.0) break; }
                        for (i64 q = 0; q < d; q++) xh[q] += a.D[q * N + j];
                        nsp++;
                        if (a.max_spikes > 0 && a.spk_n[t] < a.max_spikes) {
                            const i64 slot = t * a.max_spikes + a.spk_n[t]++;
                            a.spk_t[slot] = (double)(a.step0 + i * a.sub + s + 1) * a.dt_s;
                            a.spk_i[slot] = j;
                        }
                    }
                }
                for (i64 j = 0; j < N; j++) V[j] = -a.thr[j];
                for (i64 q = 0; q < d; q++) {
                    const double eq = e[q], *Dq = a.D + q * N;
                    for (i64 j = 0; j < N; j++) V[j] += Dq[j] * eq;
                }
                i64 best = -1;
                double vmax = 0.0;
                for (i64 j = 0; j < N; j++)
                    if (V[j] > vmax) { vmax = V[j]; best = j; }
                if (best >= 0) {
                    for (i64 q = 0; q < d; q++) {
                        e[q] -= a.D[q * N + best];
                        xh[q] += a.D[q * N + best];
                    }
                    nsp++;
                    if (a.max_spikes > 0 && a.spk_n[t] < a.max_spikes) {
                        const i64 slot = t * a.max_spikes + a.spk_n[t]++;
                        a.spk_t[slot] = (double)(a.step0 + i * a.sub + s + 1) * a.dt_s;
                        a.spk_i[slot] = best;
                    }
                }
            }
            for (i64 q = 0; q < d; q++) a.out[(t * a.n_int + i) * d + q] = xh[q] + a.center[q];
            if (a.oute)
                for (i64 q = 0; q < d; q++) a.oute[(t * a.n_int + i) * d + q] = e[q];
        }
        a.cnt[t] = cnt;
        a.n_spikes[t] = nsp;
    }
    return 0;
}
