//! Shell completion: clap_complete's static scripts for bash, zsh and fish, wrapped so that the
//! NAME arguments of the commands that take a capture complete with the server's capture names.
//! The scripts call the hidden `__complete captures [-n NS]` (same flags, config and kubeconfig as
//! any other command), which prints one name a line; its errors go to stderr, which the scripts
//! drop, so a server that cannot be reached completes nothing.

use clap::CommandFactory;
use clap_complete::Shell;

/// The commands whose positional arguments are capture names (aliases included).
pub const CAPTURE_NAME_COMMANDS: &[&str] = &[
    "get", "list", "ls", "describe", "stop", "delete", "rm", "download", "share", "shares",
    "revoke",
];

/// The completion script for `shell`, completing the executable `bin`.
pub fn script(shell: Shell, bin: &str) -> String {
    let mut command = crate::Cli::command();
    let mut buffer = Vec::new();
    clap_complete::generate(shell, &mut command, bin, &mut buffer);
    let generated = String::from_utf8_lossy(&buffer).into_owned();
    let commands = CAPTURE_NAME_COMMANDS.join(" ");
    match shell {
        Shell::Bash => bash(&generated, bin, &commands),
        Shell::Zsh => zsh(&generated, bin),
        Shell::Fish => fish(&generated, bin, &commands),
        _ => generated,
    }
}

/// Bash: a function in front of clap's that answers capture names for a positional word after
/// one of the commands, and hands everything else to clap's function.
fn bash(generated: &str, bin: &str, commands: &str) -> String {
    let clap_fn = format!("_{}", bin.replace('-', "__"));
    let hook = format!("_{}_podcap_names", bin.replace('-', "_"));
    let cases = commands.replace(' ', "|");
    format!(
        r#"{generated}
# Capture names from the server for NAME arguments (`{bin} __complete captures`).
{hook}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" sub="" ns="" i w
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        case "$w" in
            -n|--namespace) ns="${{COMP_WORDS[i+1]}}"; ((i++)) ;;
            --namespace=*) ns="${{w#--namespace=}}" ;;
            --server|--token|--context|--kubeconfig|-o|--output|--format|--file|--expires) ((i++)) ;;
            -*) ;;
            *) [[ -z "$sub" ]] && sub="$w" ;;
        esac
    done
    case "$sub" in
        {cases})
            case "$prev" in
                -n|--namespace|--server|--token|--context|--kubeconfig|-o|--output|--format|--file|--expires) ;;
                *)
                    if [[ "$cur" != -* ]]; then
                        COMPREPLY=($(compgen -W "$("{bin}" __complete captures ${{ns:+-n "$ns"}} 2>/dev/null)" -- "$cur"))
                        return 0
                    fi
                    ;;
            esac
            ;;
    esac
    {clap_fn} "$@"
}}
complete -F {hook} -o bashdefault -o default {bin}
"#
    )
}

/// Zsh: the positional NAME specs of the capture commands complete with `_podcap_captures`
/// instead of `_default`.
fn zsh(generated: &str, bin: &str) -> String {
    let function = format!(
        r#"
# Capture names from the server for NAME arguments (`{bin} __complete captures`).
_podcap_captures() {{
    local -a names ns toks
    local i
    toks=(${{(z)BUFFER}})
    for ((i = 1; i < ${{#toks}}; i++)); do
        if [[ ${{toks[i]}} == -n || ${{toks[i]}} == --namespace ]]; then
            ns=(-n ${{toks[i+1]}})
        fi
    done
    names=(${{(f)"$({bin} __complete captures $ns 2>/dev/null)"}})
    compadd -a names
}}
"#
    );
    let mut out = String::new();
    let mut section = String::new();
    for (i, line) in generated.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('(') && trimmed.ends_with(')') && !trimmed.contains(' ') {
            section = trimmed.trim_matches(|c| c == '(' || c == ')').to_string();
        }
        let positional = matches!(
            trimmed,
            "':name:_default' \\" | "'::name:_default' \\" | "'*::names:_default' \\"
        );
        if positional && CAPTURE_NAME_COMMANDS.contains(&section.as_str()) {
            out.push_str(&line.replace(":_default'", ":_podcap_captures'"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
        if i == 0 {
            out.push_str(&function);
        }
    }
    out
}

/// Fish: one more rule offering capture names after the capture commands.
fn fish(generated: &str, bin: &str, commands: &str) -> String {
    let prefix = format!("__fish_{}", bin.replace('-', "_"));
    format!(
        r#"{generated}
# Capture names from the server for NAME arguments (`{bin} __complete captures`).
function {prefix}_captures
    set -l toks (commandline -opc)
    set -l ns
    for i in (seq (count $toks))
        if contains -- $toks[$i] -n --namespace; and test $i -lt (count $toks)
            set ns -n $toks[(math $i + 1)]
        end
    end
    {bin} __complete captures $ns 2>/dev/null
end
complete -c {bin} -n "{prefix}_using_subcommand {commands}" -f -a "({prefix}_captures)"
"#
    )
}
