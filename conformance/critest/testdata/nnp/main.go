// Command nnp stands in for critest's nonewprivs image: installed setuid
// root, it prints the effective UID it got, which no_new_privs keeps at the
// caller's.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("Effective uid: %d\n", os.Geteuid())
}
