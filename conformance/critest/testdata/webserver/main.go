// Command webserver stands in for the nginx and httpd images of critest
// (there is no registry.k8s.io here): it writes its PID where nginx does,
// says which server it plays on stdout (critest reads the container log),
// and serves a page on the port given (default 80).
package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
)

func main() {
	port := "80"
	if len(os.Args) > 1 {
		port = os.Args[1]
	}
	name := filepath.Base(os.Args[0])
	_ = os.MkdirAll("/var/run", 0o755)
	_ = os.WriteFile("/var/run/"+name+".pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	fmt.Printf("%s listening on port %s\n", name, port)
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "<html><body><h1>Welcome to %s!</h1></body></html>\n", name)
	})
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
