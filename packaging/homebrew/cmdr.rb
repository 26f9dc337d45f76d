# Homebrew formula for cmdr. Build from a release tarball:
#   brew install --build-from-source ./packaging/homebrew/cmdr.rb
#   brew services start cmdr          # runs cmdrd at login through launchd
class Cmdr < Formula
  desc "AWS credentials daemon: watches ~/.aws, tracks token expiry, pushes events"
  homepage "https://github.com/cmdr-dev/cmdr"
  url "https://github.com/cmdr-dev/cmdr/archive/refs/tags/v0.1.0.tar.gz"
  sha256 "REPLACE_WITH_THE_RELEASE_TARBALL_SHA256"
  license any_of: ["MIT", "Apache-2.0"]
  head "https://github.com/cmdr-dev/cmdr.git", branch: "main"

  depends_on "rust" => :build

  def install
    system "cargo", "install", *std_cargo_args(path: "crates/cmdrd")
    system "cargo", "install", *std_cargo_args(path: "crates/cmdrctl")
    system bin/"cmdrctl", "generate-assets", "--out", buildpath/"assets"
    man1.install Dir[buildpath/"assets/man/man1/*.1"]
    bash_completion.install buildpath/"assets/completions/bash/cmdrctl.bash" => "cmdrctl"
    zsh_completion.install buildpath/"assets/completions/zsh/_cmdrctl"
    fish_completion.install buildpath/"assets/completions/fish/cmdrctl.fish"
  end

  # The same agent as launchd/dev.cmdr.cmdrd.plist: at login, restarted after a crash
  # but not after a clean exit, background priority, logs under ~/Library/Logs.
  service do
    run [opt_bin/"cmdrd"]
    run_at_load true
    keep_alive successful_exit: false
    process_type :background
    environment_variables RUST_LOG: "info"
    log_path "#{Dir.home}/Library/Logs/cmdrd.log"
    error_log_path "#{Dir.home}/Library/Logs/cmdrd.log"
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/cmdrd --version")
    assert_match "cmdrctl", shell_output("#{bin}/cmdrctl --version")
  end
end
