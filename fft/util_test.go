package fft

import "unsafe"

func uintptrOf(s []float32) uintptr    { return uintptr(unsafe.Pointer(&s[0])) }
func uintptrOfC(s []complex64) uintptr { return uintptr(unsafe.Pointer(&s[0])) }
