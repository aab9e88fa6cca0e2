package admm

import (
	"context"
	"fmt"
)

// Solving a small lasso, minimize 1/2 sum (m_i x_i - b_i)^2 + 0.5 ||x||_1
// (the lasso Problem of this package's tests), whose solution is
// soft(m_i b_i, 0.5) / m_i^2.
func ExampleSolver() {
	p := newLasso([]float64{1, 2, 0.5}, []float64{3, -0.1, 2}, 0.5)
	opt := DefaultOptions()
	opt.RelStopTol = 1e-8
	opt.MaxIter = 1000
	s, err := New(p, opt, 1)
	if err != nil {
		panic(err)
	}
	res, err := s.Run(context.Background(), nil)
	if err != nil {
		panic(err)
	}
	fmt.Printf("converged %v, y = [%.4f %.4f %.4f]\n", res.Converged, p.y[0], p.y[1], p.y[2])
	// Output:
	// converged true, y = [2.5000 0.0000 2.0000]
}
