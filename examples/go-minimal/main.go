// A small HTTP server for a FROM scratch image: standard library only, built with
// CGO_ENABLED=0 so the binary needs no libc. `-healthcheck` makes the same binary a client of
// its own /healthz (scratch has no curl), for the image's HEALTHCHECK.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"
)

func main() {
	healthcheck := flag.Bool("healthcheck", false, "GET /healthz on the local server and exit 0 if it answers 200")
	flag.Parse()

	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if *healthcheck {
		os.Exit(check("http://127.0.0.1:" + port + "/healthz"))
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "hello from go-minimal (%s, uid %d)\n", runtime.Version(), os.Getuid())
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	log.Printf("go-minimal listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, mux))
}

func check(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, url, resp.Status)
		return 1
	}
	return 0
}
