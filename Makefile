# autoglm.fleet: the two commands of the quick start are `make lab` and `make test`.
# Every target that needs the controller set-up depends on `setup`, which is idempotent.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= 0
export MAKE_TARGET := $(firstword $(MAKECMDGOALS))

.PHONY: help setup lab lab-down test lint sanity unit argspecs molecule e2e build integration release constraints image-cuda image-vllm

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup:  ## install what the lab and the tests need (packages, Docker engine, .venv, images, wheelhouse)
	@scripts/setup.sh

lab: setup  ## bring up the local lab fleet and run site.yml on it (Mitogen's strategy; AUTOGLM_LAB_STRATEGY=linear for Ansible's)
	@. scripts/lib.sh && lab_strategy && ansible-playbook lab/playbooks/lab.yml

lab-down:  ## remove the lab hosts, their volumes and network
	@ansible-playbook lab/playbooks/lab_down.yml

test:  ## set-up, then every test tier (what .ci/run runs); the summary gives each one's minutes
	@scripts/test.sh setup lint,sanity,unit,argspecs,build,integration molecule e2e

lint:  ## ansible-lint (production), yamllint, ruff, antsibull-changelog lint
	@scripts/test.sh lint
sanity:  ## ansible-test sanity on the collection
	@scripts/test.sh sanity
unit:  ## pytest tests/unit, lab/tests and the model server's tests (no playbook runs, no image builds)
	@scripts/test.sh unit
argspecs:  ## every role's meta/argument_specs.yml names the variables of its defaults/main.yml
	@scripts/test.sh argspecs
build:  ## collection tarball (install, plugins, file list), the EE build context, the release on a scratch copy
	@scripts/test.sh build
integration:  ## real ansible-playbook/ansible-inventory runs and the model server image (pytest -m integration, -m image)
	@scripts/test.sh integration
molecule:  ## every molecule scenario (check, converge, idempotence, verify)
	@scripts/test.sh molecule
e2e:  ## the lab end to end: lab.yml twice, the second run must change nothing
	@scripts/test.sh e2e

release: setup  ## CHANGELOG.rst from the fragments, dist/ tarball + sha256, installed and its plugins listed
	@scripts/release.sh

image-cuda:  ## build the CUDA model server image (downloads several GB from PyPI; not part of `make test`)
	@VARIANT=cuda containers/model-server/build.sh

image-vllm:  ## build the vLLM engine image (untested on a GPU; several GB from PyPI; not part of `make test`)
	@containers/vllm/build.sh

constraints:  ## re-resolve constraints.txt from requirements.txt (needs network)
	@rm -rf .cache/constraints-venv && python3 -m venv .cache/constraints-venv \
	 && .cache/constraints-venv/bin/pip install -q -r requirements.txt \
	 && { echo "# Full, resolved controller environment (pip freeze of requirements.txt on Python 3.11)."; \
	      echo "# Regenerate with: make constraints"; \
	      .cache/constraints-venv/bin/pip freeze | sed "s/^torch==\(.*\)+cpu$$/torch==\1/"; } > constraints.txt
