//go:build cgo && !purego

package buildinfo

/*
#cgo LDFLAGS: -lfftw3f -lopenblas -ldnnl
#include <fftw3.h>
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>

static const char *stl_fftw_version(void) { return fftwf_version; }
static int stl_dnnl_isa(void) { return (int)dnnl_get_effective_cpu_isa(); }
*/
import "C"

import (
	"fmt"
	"slices"
	"strings"
)

func kernels() []Kernel {
	v := C.dnnl_version()
	return []Kernel{
		{Role: "fft", Name: "FFTW", Version: trimFFTW(C.GoString(C.stl_fftw_version()))},
		openBLAS(C.GoString(C.openblas_get_config()), C.GoString(C.openblas_get_corename())),
		{Role: "dnn", Name: "oneDNN", Version: fmt.Sprintf("%d.%d.%d", v.major, v.minor, v.patch), Detail: "isa " + dnnlISA(int(C.stl_dnnl_isa()))},
	}
}

// openBLAS parses openblas_get_config ("OpenBLAS 0.3.21 NO_LAPACKE
// DYNAMIC_ARCH ...") into the version and whether the kernel is picked at run
// time, next to the core it picked.
func openBLAS(config, core string) Kernel {
	k := Kernel{Role: "blas", Name: "OpenBLAS", Detail: "core " + core}
	f := strings.Fields(config)
	if len(f) > 1 && f[0] == "OpenBLAS" {
		k.Version = f[1]
	} else {
		k.Version = config
	}
	if slices.Contains(f, "DYNAMIC_ARCH") {
		k.Detail += ", dynamic arch"
	}
	return k
}

// trimFFTW turns "fftw-3.3.10-sse2-avx" into "3.3.10-sse2-avx".
func trimFFTW(s string) string {
	if len(s) > 5 && s[:5] == "fftw-" {
		return s[5:]
	}
	return s
}

// dnnlISA names oneDNN's dnnl_cpu_isa_t values (dnnl_types.h), which are bit
// sets of the instruction groups the library dispatches to.
func dnnlISA(isa int) string {
	switch isa {
	case 0x0:
		return "all"
	case 0x1:
		return "sse41"
	case 0x3:
		return "avx"
	case 0x7:
		return "avx2"
	case 0x27:
		return "avx512_core"
	case 0x67:
		return "avx512_core_vnni"
	case 0xe7:
		return "avx512_core_bf16"
	case 0x3e7:
		return "avx512_core_amx"
	case 0xf:
		return "avx512_mic"
	case 0x1f:
		return "avx512_mic_4ops"
	case 0x407:
		return "avx2_vnni"
	}
	return fmt.Sprintf("0x%x", isa)
}
