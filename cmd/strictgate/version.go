package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

// version is set by the Makefile's -ldflags.
var version = "dev"

func init() {
	register("version", "print the version", func(_ context.Context, _ []string, stdout, _ io.Writer) error {
		goVersion := ""
		if bi, ok := debug.ReadBuildInfo(); ok {
			goVersion = bi.GoVersion
		}
		_, err := fmt.Fprintf(stdout, "strictgate %s (%s)\n", version, goVersion)
		return err
	})
}
