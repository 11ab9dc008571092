"""Linear SVMs for cross-validated separability: a batched torch solver and the scikit-learn reference.

Both minimise the objective of `sklearn.svm.SVC(kernel='linear', C)`: 0.5 ||w||^2 + C sum_i max(0, 1 - y_i (w.x_i + b))
with an unregularised bias b. The torch solver fits every (task, fold) problem of a patch at once:

- an outer working-set loop (decomposition): solve on a subset of the training rows, keep its support vectors, add
  the rows that violate the optimality condition (margin y f < 1 with alpha = 0) and solve again; when no row
  violates it, the subset's optimum is the optimum of the whole problem. Position features are nearly separable, so
  the subset stays near the number of support vectors, a small share of the training rows, and problems that are
  done drop out of the batch;
- an inner solver of the subset's dual QP
      min_a 0.5 a'Qa - 1'a   s.t.  y'a = 0,  0 <= a <= C,   Q = (y x)(y x)'
  batched over problems: a primal-dual active-set method (solve_active) started from the previous round's alphas,
  one Cholesky of the free rows' block per iteration, exact once the sets settle; where it does not settle (a
  singular or cycling subset) the problem goes to a primal-dual interior-point method (solve_kernel, Mehrotra
  predictor-corrector to a relative duality gap `tol`, in a number of Newton steps that hardly depends on the
  conditioning). libsvm's SMO stops at a KKT tolerance of 1e-3.

Subsets larger than the feature dimension D cannot have a full-rank kernel and go straight to the interior-point
method; those larger than 2 D solve each Newton system through a D x D matrix (solve_lowrank). Its speed against
libsvm is measured by `shiftlens bench` (docs/performance.md).

Rows outside a problem's subset are padding with a zero mask, so all problems of a patch share one shape. Centring
the features is exact (the free bias absorbs any shift) and is done once, in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from shiftlens.errors import ShiftlensError

THETA_FLOOR = 1e-12


@dataclass(frozen=True)
class SolverStats:
    """What one `fit_working_set` call did: for tests (did a code path run?) and for tuning the constants below."""

    rounds: int
    """Working-set rounds (subset solves) until no training row violated optimality."""
    working_set: int
    """Rows in the largest problem's subset in the last round."""
    fallbacks: int
    """Problems handed from the active-set solver to the interior-point solver, summed over rounds."""
    active_iterations: int
    """Batched active-set iterations (one Cholesky each), summed over rounds."""
    ipm_iterations: int
    """Batched interior-point Newton steps, summed over rounds (0 when the active-set solver settled every subset)."""


def _check(X, labels, folds) -> tuple[int, int, int]:
    if X.ndim != 2:
        raise ShiftlensError(f"SVM features must be (N, D), got shape {tuple(X.shape)}")
    n = X.shape[0]
    if labels.ndim != 2 or labels.shape[1] != n:
        raise ShiftlensError(f"SVM labels must be (T, {n}), got shape {tuple(labels.shape)}")
    if folds.shape[-1] != n or folds.ndim not in (2, 3):
        raise ShiftlensError(f"SVM folds must be (K, {n}) or (T, K, {n}) boolean test masks, got {tuple(folds.shape)}")
    t = labels.shape[0]
    k = folds.shape[-2]
    return t, k, n


def _fold_masks(labels: torch.Tensor, folds: torch.Tensor) -> torch.Tensor:
    """(T, K, N) test masks from (K, N) shared or (T, K, N) per-task masks."""
    if folds.ndim == 2:
        return folds.unsqueeze(0).expand(labels.shape[0], -1, -1)
    return folds


def train_scales(X: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """(P, D) 1/std of each feature over each problem's training rows, as StandardScaler computes it (two-pass
    variance; a feature whose variance is within rounding of zero is constant and gets scale 1)."""
    w = train.to(X.dtype)
    cnt = w.sum(1, keepdim=True)
    mean = (w @ X) / cnt
    var = torch.stack([(w[p].unsqueeze(1) * (X - mean[p]) ** 2).sum(0) for p in range(w.shape[0])]) / cnt
    eps = torch.finfo(X.dtype).eps
    constant = var <= cnt * eps * var + (cnt * mean * eps) ** 2  # sklearn.preprocessing._data._is_constant_feature
    return torch.where(constant, torch.ones_like(var), 1.0 / var.sqrt())


def working_set(n: int) -> int:
    """Rows per problem in the first subset, and the most violators added per round, for n positions.

    Grows with sqrt(n): on a grid of n positions the max-margin boundary of a position task runs along a grid line,
    so the support vectors, and the rows that violate a round's solution, number a few grid lines, ~sqrt(n).
    Bigger sets cost more factorisations per round than the rounds they save; the constant was tuned with
    `shiftlens bench` (the sizes it picked are in docs/performance.md)."""
    return max(32, min(256, round(0.85 * n ** 0.5)))


LOWRANK_RATIO = 2.0
"""Subsets larger than LOWRANK_RATIO * D are solved through D x D Newton systems (solve_lowrank)."""
KKT_TOL = 1e-4
"""A row outside the subset violates optimality when its margin y f is below 1 - KKT_TOL."""
SHRINK_ROUNDS = 12
"""Rounds during which rows with zero weight leave the subset (it stays near the support vectors); after these the
subset only grows, which guarantees the loop ends."""
SUPPORT_TOL = 1e-6
"""A row is a support vector when its alpha exceeds SUPPORT_TOL * C (the interior-point solution leaves alphas of the
order of its duality gap on the others)."""


def fit_predict_cv(X: torch.Tensor, labels: torch.Tensor, folds: torch.Tensor, C: float = 1.0,
                   standardize: bool = False, tol: float = 1e-8, max_iter: int = 80) -> torch.Tensor:
    """Accuracy (T, K) of a linear SVM per task and fold, all fitted together on X's device.

    X (N, D) features; labels (T, N) in {0, 1}; folds (K, N) or (T, K, N) boolean test masks; `standardize` scales
    features by the training rows' std per problem (the mean is absorbed by the bias).
    """
    t, k, n = _check(X, labels, folds)
    dev = X.device
    dt = torch.float64
    Xc = X.to(dt)
    Xc = Xc - Xc.mean(0, keepdim=True)
    test = _fold_masks(labels.to(dev), folds.to(dev)).reshape(t * k, n).bool()
    y = (labels.to(dev).to(dt) * 2 - 1).unsqueeze(1).expand(t, k, n).reshape(t * k, n)
    train = ~test
    scale = train_scales(Xc, train) if standardize else torch.ones(t * k, Xc.shape[1], dtype=dt, device=dev)
    w, b, _ = fit_working_set(Xc, y, train, scale, C, tol, max_iter)
    f = (w * scale) @ Xc.T + b.unsqueeze(1)
    pred = torch.where(f > 0, 1.0, -1.0)
    correct = ((pred == y) & test).sum(1).to(dt)
    return (correct / test.sum(1).to(dt)).reshape(t, k).to(torch.float32)


def _initial_set(Xs_f: torch.Tensor, y: torch.Tensor, train: torch.Tensor, size: int) -> torch.Tensor:
    """(P, N) bool: per problem and class, the training rows nearest the midpoint along the class-mean difference
    (the likeliest support vectors)."""
    P, N = y.shape
    chosen = torch.zeros_like(train)
    for cls in (-1.0, 1.0):
        rows = train & (y == cls)
        score = torch.where(rows, Xs_f * cls, torch.inf)  # small = near the other class
        kth = min(size // 2, N)
        idx = score.topk(kth, dim=1, largest=False).indices
        chosen.scatter_(1, idx, True)
    return chosen & train


def fit_working_set(X: torch.Tensor, y: torch.Tensor, train: torch.Tensor, scale: torch.Tensor, C: float,
                    tol: float = 1e-8, max_iter: int = 80) -> tuple[torch.Tensor, torch.Tensor, SolverStats]:
    """Weights (P, D) in the scaled feature space x * scale, biases (P,) and what the solver did, for P SVMs sharing
    X (N, D); y (P, N) in {-1, 1}, train (P, N) bool, scale (P, D)."""
    P, N = y.shape
    w_tr = train.to(X.dtype)
    mean_diff = ((w_tr * (y > 0)) @ X) / (w_tr * (y > 0)).sum(1, keepdim=True).clamp_min(1) - \
        ((w_tr * (y < 0)) @ X) / (w_tr * (y < 0)).sum(1, keepdim=True).clamp_min(1)
    proj = ((mean_diff * scale * scale) @ X.T)  # (P, N) position along the class-mean direction
    mid = 0.5 * (torch.where(train & (y > 0), proj, torch.inf).amin(1) + torch.where(train & (y < 0), proj, -torch.inf).amax(1))
    add_n = working_set(N)
    inset = _initial_set(proj - mid.unsqueeze(1), y, train, add_n)
    Xf = X.float()  # margins only decide which rows join the subset: single precision is plenty (KKT_TOL >> 1e-7)
    w = torch.zeros_like(scale)
    b = torch.zeros(P, dtype=X.dtype, device=X.device)
    alpha_all = torch.zeros_like(y)  # each row's alpha in the last solution: the next round's starting guess
    todo = torch.arange(P, device=X.device)  # problems whose subset is not yet optimal for all rows
    size = fallbacks = active_its = ipm_its = 0
    for rounds in range(1, 1000):
        ins, ys_, sc = inset[todo], y[todo], scale[todo]
        size = int(ins.sum(1).max())
        idx = torch.argsort((~ins).to(torch.int8), dim=1, stable=True)[:, :size]  # members first, then padding
        m = ins.gather(1, idx)
        yw = ys_.gather(1, idx)
        XW = X[idx] * sc.unsqueeze(1)  # (P', size, D) the subset's rows in each problem's scaled space
        if size > LOWRANK_RATIO * X.shape[1]:
            alpha, bb, its = solve_lowrank(XW, yw, m, C, tol, max_iter)
            ipm_its += its
        else:  # float64 kernel: a float32 one moves the optimum measurably (docs/performance.md)
            K = XW @ XW.transpose(1, 2)
            if size <= X.shape[1]:  # a subset of at most D rows can have a non-singular kernel
                warm = alpha_all[todo].gather(1, idx) * m
                alpha, bb, ok, its = solve_active(yw.unsqueeze(2) * K * yw.unsqueeze(1), yw, m, C, warm, ACTIVE_ITER)
                active_its += its
                if not bool(ok.all()):  # rare: the active-set iteration cycled or met a singular subset
                    bad = (~ok).nonzero().squeeze(1)
                    alpha[bad], bb[bad], its = solve_kernel(K[bad], yw[bad], m[bad], C, tol, max_iter)
                    fallbacks += len(bad)
                    ipm_its += its
            else:
                alpha, bb, its = solve_kernel(K, yw, m, C, tol, max_iter)
                ipm_its += its
        w[todo] = ((alpha * yw * m).unsqueeze(1) @ XW).squeeze(1)
        alpha_all[todo] = torch.zeros_like(alpha_all[todo]).scatter_(1, idx, alpha * m)
        b[todo] = bb
        margin = ys_ * ((w[todo] * sc).float() @ Xf.T + bb.float().unsqueeze(1)).to(X.dtype)
        if rounds <= SHRINK_ROUNDS:
            # Keep the support vectors only: rows the solution gives (numerically) zero weight leave the subset and
            # are checked like every other row below; they come back if the solution moves against them.
            support = torch.zeros_like(ins).scatter_(1, idx, m & (alpha > SUPPORT_TOL * C))
        else:
            support = ins  # from here on the subset only grows: no cycling
        viol = train[todo] & ~support & (margin < 1 - KKT_TOL)
        worst = torch.where(viol, margin, torch.inf)
        add = worst.topk(min(add_n, N), dim=1, largest=False).indices
        new = torch.zeros_like(ins).scatter_(1, add, True) & viol
        inset[todo] = support | new
        left = viol.any(1)
        if not bool(left.any()):
            break
        todo = todo[left]  # problems already optimal are not solved again
    return w, b, SolverStats(rounds=rounds, working_set=size, fallbacks=fallbacks, active_iterations=active_its,
                             ipm_iterations=ipm_its)


def solve_kernel(K: torch.Tensor, y: torch.Tensor, m: torch.Tensor, C: float, tol: float = 1e-8,
                 max_iter: int = 80) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The SVC dual of P problems from their kernels K (P, n, n): alphas (P, n), biases (P,) and the number of
    batched Newton steps taken.

    y (P, n) in {-1, 1}; m (P, n) bool, False for padding rows (they get no weight).
    """
    a = m.to(K.dtype) * y
    Q = a.unsqueeze(2) * K * a.unsqueeze(1)

    def qmul(v):
        return (Q @ v.unsqueeze(2)).squeeze(2)

    def newton(theta_w, theta_floor):
        L = _cholesky(lambda jitter: Q + torch.diag_embed(theta_w + jitter * theta_floor))
        return lambda r: torch.cholesky_solve(r.unsqueeze(2), L).squeeze(2)

    return _dual_ipm(qmul, Q.diagonal(dim1=1, dim2=2), newton, y, m, C, tol, max_iter)


ACTIVE_ITER = 30
"""Most active-set iterations before a subset is handed to the interior-point solver: well above what a warm start
from the previous round's support vectors needs (docs/performance.md), so only a cycling subset reaches it."""


def solve_active(Q: torch.Tensor, y: torch.Tensor, m: torch.Tensor, C: float, alpha0: torch.Tensor,
                 max_iter: int = ACTIVE_ITER, eps: float = 1e-9
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The SVC dual of P problems by a primal-dual active-set method (semismooth Newton on the KKT conditions):
    guess which alphas sit at 0, at C or in between, solve the equality-constrained system of the free ones exactly
    (one Cholesky), and move the rows whose alpha left [0, C] or whose gradient has the wrong sign; stop when no row
    moves. Started from the previous round's alphas it needs a few factorisations where the interior-point method
    needs a full path of Newton steps with three solves each, and its answer is exact for the final sets rather than
    within a duality gap.

    Q (P, n, n) the signed kernel (y y' K); y (P, n); m (P, n) False on padding; alpha0 (P, n) the starting guess.
    Returns alphas (P, n), biases (P,), ok (P,): False where it did not settle (cycling, a singular free set), those
    problems need `solve_kernel`; and the number of batched iterations run.
    """
    P, n = y.shape
    dt = Q.dtype
    mf = m.to(dt)
    a = mf * y
    up = m & (alpha0 >= C * (1 - 1e-12))  # at the upper bound
    free = m & ~up  # rows outside the set start free: the solve sends those that need it to a bound
    jitter = 1e-11 * Q.diagonal(dim1=1, dim2=2).amax(1).clamp_min(1e-300)
    alpha = torch.zeros_like(a)
    nu = torch.zeros(P, dtype=dt, device=Q.device)
    ok = torch.zeros(P, dtype=torch.bool, device=Q.device)
    act = torch.arange(P, device=Q.device)  # problems still iterating; their Q is gathered when the batch shrinks
    Qa = Q
    eye = torch.eye(n, dtype=dt, device=Q.device)
    its = 0
    for its in range(1, max_iter + 1):
        fr, upa, ma, aa, mfa = free[act], up[act], m[act], a[act], mf[act]
        ff, uu = fr.to(dt), upa.to(dt)
        # Free block of Q, the identity elsewhere, so every problem keeps one shape.
        M = torch.where(fr.unsqueeze(2) & fr.unsqueeze(1), Qa, eye)
        M.diagonal(dim1=1, dim2=2).add_(jitter[act].unsqueeze(1) * ff)
        L, info = torch.linalg.cholesky_ex(M)
        any_up = bool(upa.any())
        r = ff * (mfa - (Qa @ (uu * C).unsqueeze(2)).squeeze(2)) if any_up else ff * mfa  # 1 - Q_FU C
        af = aa * ff
        sol = torch.cholesky_solve(torch.stack([r, af], 2), L)
        qr, qa = sol[..., 0] * ff, sol[..., 1] * ff
        den = (af * qa).sum(1)
        nu_new = ((af * qr).sum(1) + C * (aa * uu).sum(1)) / den  # y'alpha = 0 fixes the bias
        al = qr - qa * nu_new.unsqueeze(1) + uu * C
        g = (Qa @ al.unsqueeze(2)).squeeze(2) - mfa + nu_new.unsqueeze(1) * aa  # gradient of the Lagrangian
        lo = ma & ~fr & ~upa
        tol_g = eps * (1 + g.abs().amax(1, keepdim=True))
        wrong = (fr & ((al < -eps * C) | (al > C * (1 + eps)))) | (lo & (g < -tol_g)) | (upa & (g > tol_g))
        failed = (info > 0) | ~(den > 0) | ~torch.isfinite(nu_new)
        settled = ~wrong.any(1) & ~failed
        alpha[act[settled]] = al[settled]
        nu[act[settled]] = nu_new[settled]
        ok[act[settled]] = True
        new_up = ma & ((fr & (al >= C)) | (upa & (g <= 0)))
        new_lo = ma & ((fr & (al <= 0)) | (lo & (g >= 0)))
        free[act] = ma & ~new_up & ~new_lo
        up[act] = new_up
        going = ~(settled | failed)
        if not bool(going.any()):
            break
        if int(going.sum()) < len(act):
            act, Qa = act[going], Qa[going]
    return alpha.clamp(0, C) * mf, nu, ok, its


def solve_lowrank(XW: torch.Tensor, y: torch.Tensor, m: torch.Tensor, C: float, tol: float = 1e-8,
                  max_iter: int = 80) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The same dual from the rows XW (P, n, D) themselves, for n > D: Q = Z Z' with Z = (y x) is never formed, and
    each Newton system (Theta + Z Z') p = r is solved through the D x D matrix I + Z' Theta^-1 Z (Sherman-Morrison-
    Woodbury), one refinement step against the exact residual: O(n D^2) per step instead of O(n^3). Returns alphas,
    biases and Newton steps as `solve_kernel`."""
    a = m.to(XW.dtype) * y
    Z = a.unsqueeze(2) * XW
    Zt = Z.transpose(1, 2)
    D = Z.shape[2]
    eye = torch.eye(D, dtype=Z.dtype, device=Z.device)

    def qmul(v):
        return (Z @ (Zt @ v.unsqueeze(2))).squeeze(2)

    def newton(theta_w, theta_floor):
        dinv = 1.0 / theta_w
        M = Zt @ (dinv.unsqueeze(2) * Z)
        scale = M.diagonal(dim1=1, dim2=2).amax(1).clamp_min(1.0)[:, None, None]
        L = _cholesky(lambda jitter: M + eye * (1.0 + jitter * 1e-12 * scale))

        def once(r):
            q = torch.cholesky_solve(Zt @ (dinv * r).unsqueeze(2), L)
            return dinv * (r - (Z @ q).squeeze(2))

        def solve(r):
            p = once(r)
            return p + once(r - qmul(p) - theta_w * p)

        return solve

    return _dual_ipm(qmul, (Z * Z).sum(2), newton, y, m, C, tol, max_iter)


def _dual_ipm(qmul, diag, newton, y: torch.Tensor, m: torch.Tensor, C: float, tol: float,
              max_iter: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mehrotra predictor-corrector on min 0.5 a'Qa - 1'a s.t. y'a = 0, 0 <= a <= C, given Q v (qmul), diag(Q) and
    newton(theta, floor) -> a solver of (Q + diag(theta)) p = r. Returns alphas, biases and the Newton steps taken."""
    P, N = y.shape
    dt = diag.dtype
    m = m.to(dt)
    a = m * y  # equality-constraint coefficients; zero for padding rows
    u = torch.full_like(a, float(C))
    e = m
    theta_floor = THETA_FLOOR * diag.amax(1, keepdim=True).clamp_min(1e-300)  # relative to the largest Q_ii
    alpha = u / 2
    w_up = u - alpha  # the upper slack is its own variable: u - alpha would round to 0 next to the bound
    nu = torch.zeros(P, dtype=dt, device=y.device)
    # Start dual-feasible: s - t = Q alpha - e, both strictly positive.
    r0 = qmul(alpha) - e
    delta = 1.0 + 0.1 * r0.abs().mean(1, keepdim=True)
    s = r0.clamp_min(0) + delta
    t = (-r0).clamp_min(0) + delta
    ntrain = m.sum(1)
    steps = 0
    for _ in range(max_iter):
        Qa = qmul(alpha)
        rd = Qa - e + nu.unsqueeze(1) * a - s + t
        rp = (a * alpha).sum(1)
        mu = ((alpha * s + w_up * t).sum(1)) / (2 * N)
        # Converged: the SVM's own duality gap (primal at w = Z'alpha, b = nu) or the QP's complementarity gap is
        # small, with both residuals.
        quad = (alpha * Qa).sum(1)
        hinge = (m * (1 - Qa - a * nu.unsqueeze(1)).clamp_min(0)).sum(1)
        primal = 0.5 * quad + C * hinge
        dual = (e * alpha).sum(1) - 0.5 * quad
        gap = (primal - dual) / primal.abs().clamp_min(1.0)
        comp = (alpha * s + w_up * t).sum(1) / dual.abs().clamp_min(1.0)
        feas = rp.abs() / ntrain.clamp_min(1)
        dres = rd.abs().amax(1) / (1.0 + Qa.abs().amax(1))
        active = ~(((gap < tol) | (comp < tol)) & (feas < 1e-9) & (dres < 1e-9))
        if not bool(active.any()):
            break
        theta = s / alpha + t / w_up
        # Free support vectors drive theta to 0 and leave Q + Theta numerically singular: a floor on theta keeps it
        # factorisable. The step is then slightly inexact; the residuals above stay exact.
        theta_w = torch.maximum(theta, theta_floor)
        msolve = newton(theta_w, theta_floor)

        q = msolve(a)
        aq = (a * q).sum(1)

        def direction(comp_s, comp_t):
            # Newton step for the targets alpha*s -> comp_s and (u - alpha)*t -> comp_t (linearised).
            r = -rd + comp_s / alpha - s - comp_t / w_up + t
            p = msolve(r)
            dnu = ((a * p).sum(1) + rp) / aq
            dal = p - q * dnu.unsqueeze(1)
            ds = (comp_s - alpha * s - s * dal) / alpha
            dt_ = (comp_t - w_up * t + t * dal) / w_up
            return dal, dnu, ds, dt_

        def max_step(dal, ds, dt_):
            ratios = [torch.where(dal < 0, -alpha / dal, torch.inf), torch.where(dal > 0, w_up / dal, torch.inf),
                      torch.where(ds < 0, -s / ds, torch.inf), torch.where(dt_ < 0, -t / dt_, torch.inf)]
            return torch.stack([r.amin(1) for r in ratios]).amin(0).clamp(max=1.0)

        zero = torch.zeros_like(a)
        dal, dnu, ds, dt_ = direction(zero, zero)  # predictor (affine scaling)
        step = max_step(dal, ds, dt_)
        st = step.unsqueeze(1)
        mu_aff = (((alpha + st * dal) * (s + st * ds) + (w_up - st * dal) * (t + st * dt_)).sum(1)) / (2 * N)
        sigma = ((mu_aff / mu) ** 3).clamp(0, 1).unsqueeze(1)
        target = sigma * mu.unsqueeze(1)
        dal, dnu, ds, dt_ = direction(target - dal * ds, target + dal * dt_)  # corrector
        # Converged problems stay where they are (further steps would only push alphas into rounding).
        step = torch.nan_to_num((0.995 * max_step(dal, ds, dt_)).clamp(max=1.0) * active, nan=0.0)
        st = step.unsqueeze(1)
        alpha = alpha + st * dal
        w_up = w_up - st * dal
        nu = nu + step * dnu
        s = s + st * ds
        t = t + st * dt_
        steps += 1
    return alpha, nu, steps


def _cholesky(make):
    """Cholesky factor of make(0); retried with make(10), make(1000), ... jitter while any matrix is not PD."""
    jitter = 0.0
    for _ in range(6):
        L, info = torch.linalg.cholesky_ex(make(jitter))
        if not bool((info > 0).any()):
            return L
        jitter = 10.0 if jitter == 0 else jitter * 100
    raise ShiftlensError("the SVM solver could not factorise its Newton system: try --svm sklearn")


def sklearn_cv(X, labels, folds, C: float = 1.0, standardize: bool = False) -> np.ndarray:
    """The reference: `SVC(kernel='linear', C)` per task and fold (with a StandardScaler on the training rows when
    `standardize`). Same arguments and result as `fit_predict_cv`."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    X = np.asarray(X.cpu() if isinstance(X, torch.Tensor) else X, dtype=np.float64)  # float64 like the torch solver
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    folds = np.asarray(folds.cpu() if isinstance(folds, torch.Tensor) else folds, dtype=bool)
    t, k, _ = _check(X, labels, folds)
    if folds.ndim == 2:
        folds = np.broadcast_to(folds, (t, *folds.shape))
    acc = np.zeros((t, k), np.float32)
    for i in range(t):
        for j in range(k):
            te = folds[i, j]
            clf = SVC(kernel="linear", C=C)
            if standardize:
                clf = make_pipeline(StandardScaler(), clf)
            clf.fit(X[~te], labels[i, ~te])
            acc[i, j] = clf.score(X[te], labels[i, te])
    return acc
