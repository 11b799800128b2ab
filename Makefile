# Convenience targets; the scripts in tools/ are the real entry points.
.PHONY: deb test test-package

deb:  ## build dist/petra_<version>-1_<arch>.deb
	tools/build-deb

test:  ## lint, types and the test suite (what CI runs)
	tools/test.sh

test-package:  ## the .deb end to end, as root on a throwaway machine
	tools/test-package.sh
