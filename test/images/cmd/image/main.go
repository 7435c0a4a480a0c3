// Command image packs bin/strictgate (or -binary) into an OCI image tarball without a
// container engine or registry, for `make image`: import the tarball into your nodes'
// runtime (or push it with any OCI tool) and point the chart's image values at it.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/strictgate/strictgate/test/images"
)

func main() {
	bin := flag.String("binary", "bin/strictgate", "static strictgate binary to pack (make build)")
	dir := flag.String("out", "bin", "directory for the image tarball")
	flag.Parse()
	img, err := images.StrictgateFromBinary(*bin, *dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%s\n  helm ... --set image.repository=%s,image.tag=%s\n", img.Tarball, img.Repository, img.Tag)
}
