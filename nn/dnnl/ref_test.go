package dnnl

// Naive direct convolutions in float64, the reference of the conformance
// tests. Each also returns, per output element, the sum of the absolute
// values of the terms it added, which bounds float32 rounding error.

// refForward returns y = conv(x, w) + b and the per-element absolute term sums.
func refForward(p ConvParams, x, w, b []float32) (y, mag []float64) {
	oh, ow := p.OutHW()
	y = make([]float64, p.N*p.K*oh*ow)
	mag = make([]float64, len(y))
	for n := 0; n < p.N; n++ {
		for k := 0; k < p.K; k++ {
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					var s, m float64
					if b != nil {
						s, m = float64(b[k]), abs(float64(b[k]))
					}
					for c := 0; c < p.C; c++ {
						for r := 0; r < p.R; r++ {
							h := i*p.StrideH + r - p.PadH
							if h < 0 || h >= p.H {
								continue
							}
							for q := 0; q < p.S; q++ {
								v := j*p.StrideW + q - p.PadW
								if v < 0 || v >= p.W {
									continue
								}
								t := float64(w[((k*p.C+c)*p.R+r)*p.S+q]) * float64(x[((n*p.C+c)*p.H+h)*p.W+v])
								s += t
								m += abs(t)
							}
						}
					}
					o := ((n*p.K+k)*oh+i)*ow + j
					y[o], mag[o] = s, m
				}
			}
		}
	}
	return y, mag
}

// refBackwardData returns dx = conv^T(dy, w), the adjoint of refForward
// without bias.
func refBackwardData(p ConvParams, dy, w []float32) (dx, mag []float64) {
	oh, ow := p.OutHW()
	dx = make([]float64, p.N*p.C*p.H*p.W)
	mag = make([]float64, len(dx))
	for n := 0; n < p.N; n++ {
		for k := 0; k < p.K; k++ {
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					g := float64(dy[((n*p.K+k)*oh+i)*ow+j])
					for c := 0; c < p.C; c++ {
						for r := 0; r < p.R; r++ {
							h := i*p.StrideH + r - p.PadH
							if h < 0 || h >= p.H {
								continue
							}
							for q := 0; q < p.S; q++ {
								v := j*p.StrideW + q - p.PadW
								if v < 0 || v >= p.W {
									continue
								}
								t := g * float64(w[((k*p.C+c)*p.R+r)*p.S+q])
								o := ((n*p.C+c)*p.H+h)*p.W + v
								dx[o] += t
								mag[o] += abs(t)
							}
						}
					}
				}
			}
		}
	}
	return dx, mag
}

// refBackwardWeights returns dw and db for output gradient dy and input x.
func refBackwardWeights(p ConvParams, x, dy []float32) (dw, dwMag, db, dbMag []float64) {
	oh, ow := p.OutHW()
	dw = make([]float64, p.K*p.C*p.R*p.S)
	dwMag = make([]float64, len(dw))
	db = make([]float64, p.K)
	dbMag = make([]float64, p.K)
	for n := 0; n < p.N; n++ {
		for k := 0; k < p.K; k++ {
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					g := float64(dy[((n*p.K+k)*oh+i)*ow+j])
					db[k] += g
					dbMag[k] += abs(g)
					for c := 0; c < p.C; c++ {
						for r := 0; r < p.R; r++ {
							h := i*p.StrideH + r - p.PadH
							if h < 0 || h >= p.H {
								continue
							}
							for q := 0; q < p.S; q++ {
								v := j*p.StrideW + q - p.PadW
								if v < 0 || v >= p.W {
									continue
								}
								t := g * float64(x[((n*p.C+c)*p.H+h)*p.W+v])
								o := ((k*p.C+c)*p.R+r)*p.S + q
								dw[o] += t
								dwMag[o] += abs(t)
							}
						}
					}
				}
			}
		}
	}
	return dw, dwMag, db, dbMag
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
