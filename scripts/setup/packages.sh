# shellcheck shell=bash
# Component "packages": Debian packages to build and test Kybernate.
# CRIU's own build/runtime packages live in criu.sh so `setup.sh criu`
# works on its own.

PACKAGES_BUILD=(
	meson ninja-build pkg-config gcc clang clang-format git make
	libgrpc-dev protobuf-c-compiler libprotobuf-c-dev protobuf-compiler
	libcmocka-dev libjansson-dev libyaml-dev libcurl4-openssl-dev
	libarchive-dev libzstd-dev zstd libmicrohttpd-dev valgrind libclang-rt-14-dev libssl-dev
)

PACKAGES_TEST=(
	python3 python3-grpcio python3-protobuf python3-pytest python3-yaml
	python3-jsonschema
)

setup_packages() {
	ensure_packages "build+test" "${PACKAGES_BUILD[@]}" "${PACKAGES_TEST[@]}"
}
