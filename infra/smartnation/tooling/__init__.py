"""Developer and site tooling outside the Pulumi program: the pinned toolchain built from Go
modules and the two local clusters that stand for Düsseldorf and Monaco."""
