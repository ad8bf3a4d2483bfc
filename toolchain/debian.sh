# Shell functions for the build scripts (sourced): Debian packages on the build machine, and
# Debian source packages fetched without touching the machine's apt sources.

# install_missing PKG...: apt-get installs the packages that are not installed yet (and runs
# apt-get update only when there is one).
install_missing() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  printf '[debian] apt-get install %s\n' "${missing[*]}" >&2
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# fetch_sources SUITE DIR PKG[=VERSION]...: downloads the source packages of Debian SUITE into
# DIR/src through a private apt configuration in DIR holding only a deb-src line.
fetch_sources() {
  local suite="$1" apt="$2"; shift 2
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/prefs.d" "$apt/src"
  echo "deb-src http://deb.debian.org/debian $suite main" > "$apt/sources.list"
  cat > "$apt/apt.conf" <<CONF
Dir::Etc::SourceList "$apt/sources.list";
Dir::Etc::SourceParts "/nonexistent";
Dir::Etc::PreferencesParts "$apt/prefs.d";
Dir::State::Lists "$apt/lists";
Dir::Cache "$apt/cache";
APT::Sandbox::User "root";
CONF
  APT_CONFIG="$apt/apt.conf" apt-get update -qq
  (cd "$apt/src" && APT_CONFIG="$apt/apt.conf" apt-get source -qq --download-only "$@" >/dev/null)
}
