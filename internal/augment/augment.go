// Package augment holds the pixel work of the standard CIFAR-10 training
// augmentation (He et al. 2016): a crop of the image zero-padded on every
// side, which is the image shifted by up to the padding with zeros shifted
// in, and a horizontal flip. Callers draw the shifts and the flip from
// their own random sources, in their own order, so that each keeps its
// reproducible stream; package nn (classifier training) and package
// dataset (Augmenter) share this one implementation.
package augment

// ShiftFlip writes into dst the image src, both (C, H, W) planes of
// c*h*w values, shifted and then mirrored left-right when flip is set:
// dst[ch][y][x] = src[ch][y+dy][x'+dx] with x' = w-1-x under flip and x
// otherwise, and 0 where that pixel lies outside the image. A crop at
// offset (pad+dy, pad+dx) of src zero-padded by pad pixels is ShiftFlip
// with dy, dx in [-pad, pad]. dst must not alias src. It allocates
// nothing and is safe for concurrent use on distinct dst.
func ShiftFlip(dst, src []float32, c, h, w, dy, dx int, flip bool) {
	n := c * h * w
	dst, src = dst[:n], src[:n]
	if dy == 0 && dx == 0 && !flip {
		copy(dst, src)
		return
	}
	for ch := 0; ch < c; ch++ {
		for y := 0; y < h; y++ {
			sy := y + dy
			row := dst[(ch*h+y)*w : (ch*h+y+1)*w]
			if sy < 0 || sy >= h {
				clear(row)
				continue
			}
			srow := src[(ch*h+sy)*w : (ch*h+sy+1)*w]
			for x := range row {
				xx := x
				if flip {
					xx = w - 1 - x
				}
				sx := xx + dx
				if sx < 0 || sx >= w {
					row[x] = 0
				} else {
					row[x] = srow[sx]
				}
			}
		}
	}
}
