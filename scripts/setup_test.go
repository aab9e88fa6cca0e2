// Package scripts holds the set-up scripts behind `make run` and `make test`;
// this test checks the decisions of scripts/with-deps.
package scripts

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// withDeps runs scripts/with-deps printing GOFLAGS, under env added to the
// test's environment, and returns its stdout and stderr.
func withDeps(t *testing.T, env ...string) (stdout, stderr string) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	cmd := exec.Command("bash", "with-deps", "sh", "-c", `printf '%s' "$GOFLAGS"`)
	cmd.Env = append(os.Environ(), "GOFLAGS=", "STL_PUREGO=")
	cmd.Env = append(cmd.Env, env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("with-deps: %v\n%s", err, errb.String())
	}
	return out.String(), errb.String()
}

func TestWithDepsFallsBackToPureGo(t *testing.T) {
	// A compiler that always fails stands for missing libraries; with
	// installing forbidden the script must warn and pick the purego build.
	out, errs := withDeps(t, "CC=false", "STL_NO_INSTALL=1")
	if !strings.Contains(out, "-tags=purego") {
		t.Errorf("GOFLAGS = %q, want -tags=purego", out)
	}
	for _, want := range []string{"missing", "WARNING", "pure-Go build", "slower"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

func TestWithDepsForcedPureGo(t *testing.T) {
	out, errs := withDeps(t, "STL_PUREGO=1")
	if !strings.Contains(out, "-tags=purego") {
		t.Errorf("GOFLAGS = %q, want -tags=purego", out)
	}
	if strings.Contains(errs, "installing") {
		t.Errorf("STL_PUREGO=1 must not install anything:\n%s", errs)
	}
}

func TestWithDepsKeepsCgoBuildWhenLibrariesArePresent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("checked on Linux")
	}
	// The check compiles one C program; skip where the libraries are absent
	// (a purego-only machine), which the test above covers.
	probe := exec.Command("bash", "-c", `printf '#include <fftw3.h>\n#include <cblas.h>\n#include <oneapi/dnnl/dnnl.h>\nint main(void){return 0;}\n' | cc -x c - -o /dev/null -lfftw3f -lopenblas -ldnnl -lgomp`)
	if probe.Run() != nil {
		t.Skip("the C libraries are not installed here")
	}
	out, errs := withDeps(t, "STL_NO_INSTALL=1")
	if out != "" {
		t.Errorf("GOFLAGS = %q with the libraries present, want empty", out)
	}
	if errs != "" {
		t.Errorf("with the libraries present the script must be silent, said:\n%s", errs)
	}
}
