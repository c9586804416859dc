"""`make images`: the platform's container images, built here and served by a local registry per site.

- pins.py reads images.yaml (what each image is built from);
- rootfs.py makes Debian root filesystems (mmdebstrap) and turns a directory into a
  reproducible layer; oci.py assembles and inspects OCI layouts (umoci);
- builder.py builds an image once per input digest into the cache and reuses it after;
- recipes/ holds one module per image (what goes in, who runs it, its entrypoint); city_apis.py
  makes the three API images over one root filesystem; python_lock.py writes services/constraints.txt;
- registry.py runs Debian's docker-registry per site on loopback and pushes by digest (skopeo);
- main.py is the command line (`python -m smartnation.tooling.images`).
"""
