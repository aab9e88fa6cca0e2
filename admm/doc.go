// Package admm is the one generic ADMM loop (Boyd et al. 2010, section 3;
// SPORCO's admm.ADMM) shared by the project's solvers: CBPDN, the
// dictionary update of dictionary learning, and any other problem of the
// form
//
//	minimize_{x,y}  f(x) + g(y)   subject to  Ax + By = c.
//
// The loop owns over-relaxation, adaptive penalty (rho) with residual
// balancing, normalized residuals, the stopping rule, iteration statistics,
// timing and cancellation. A Problem supplies only its steps (x, y and the
// scaled dual u = dual/rho), its residual norms, and a hook that refreshes
// cached factorizations when rho changes (paper section 3.3, following
// Wohlberg's "Efficient algorithms for convolutional sparse
// representations", 2016).
package admm
