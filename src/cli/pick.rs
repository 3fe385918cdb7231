//! `--group NAME` of `simulate` and `tune`: which scaling engine of a
//! configuration to model — an albatross `[[group]]` (by its primary) or a
//! horizontal `[[lxc]]` (by its name, `lxc:web` or `web`, or its vmid).

use std::path::Path;

use anyhow::bail;

use crate::config::Config;
use crate::core::Policy;
use crate::core::lxc::Mode;
use crate::name::Name;

/// Where a group's keys live in the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `[policy]` (no group configured, or no configuration).
    Policy,
    /// The i-th `[[group]]`.
    Group(usize),
    /// The i-th `[[lxc]]`.
    Lxc(usize),
}

/// The group picked: its name, effective policy, and section.
#[derive(Debug, Clone)]
pub struct Picked {
    pub name: Name,
    pub policy: Policy,
    pub section: Section,
}

impl Picked {
    /// Whether the daemon fits seasonal forecasts for it: for albatross groups,
    /// not for containers (their `predictive = true` is Holt's forecast alone).
    pub fn seasonal(&self) -> bool {
        !matches!(self.section, Section::Lxc(_))
    }

    /// The section as the operator reads it, e.g. `[[lxc]] vmid = 101`.
    pub fn header(&self, config: Option<&Config>) -> String {
        match (self.section, config) {
            (Section::Group(_), _) => format!("[[group]] primary = \"{}\"", self.name),
            (Section::Lxc(i), Some(c)) => format!("[[lxc]] vmid = {}", c.lxc[i].vmid),
            _ => "[policy]".into(),
        }
    }
}

/// Load `config` (if given) and [`pick`] from it.
pub fn load_and_pick(
    config: Option<&Path>,
    want: Option<&str>,
) -> anyhow::Result<(Option<Config>, Picked)> {
    let loaded = config.map(Config::load).transpose()?;
    let picked = pick(config.zip(loaded.as_ref()), want)?;
    Ok((loaded, picked))
}

/// The group of `config` named `want`, else its first `[[group]]`, else its first
/// horizontal `[[lxc]]`, else `[policy]` (or the defaults) for a group named
/// `sim:app`. A `want` that names more than one is refused, naming them.
pub fn pick(config: Option<(&Path, &Config)>, want: Option<&str>) -> anyhow::Result<Picked> {
    let fallback = || Name::parse("sim:app").expect("a valid name");
    let Some((path, c)) = config else {
        return Ok(Picked {
            name: fallback(),
            policy: Policy::default(),
            section: Section::Policy,
        });
    };
    let group = |i: usize| Picked {
        name: c.groups[i].primary.clone(),
        policy: Policy::clone(&c.groups[i].policy),
        section: Section::Group(i),
    };
    let Some(want) = want.map(str::trim) else {
        if !c.groups.is_empty() {
            return Ok(group(0));
        }
        if let Some(i) = c.lxc.iter().position(|l| l.mode.clones()) {
            return lxc(path, c, i, &c.lxc[i].name.to_string());
        }
        return Ok(Picked {
            name: fallback(),
            policy: c.policy.clone(),
            section: Section::Policy,
        });
    };
    // As names are written anywhere else: case and a root marker do not matter.
    let as_name = Name::parse(want).ok();
    let as_label = crate::name::label(want).ok();
    let groups: Vec<usize> = (0..c.groups.len())
        .filter(|&i| as_name.as_ref() == Some(&c.groups[i].primary))
        .collect();
    let lxcs: Vec<usize> = (0..c.lxc.len())
        .filter(|&i| {
            let l = &c.lxc[i];
            as_name.as_ref() == Some(&l.name)
                || (as_label.is_some() && l.name.label == as_label)
                || l.vmid.to_string() == want
        })
        .collect();
    match (groups.as_slice(), lxcs.as_slice()) {
        ([i], []) => return Ok(group(*i)),
        ([], [i]) => return lxc(path, c, *i, want),
        ([], []) => {}
        _ => {
            let mut all: Vec<String> = groups
                .iter()
                .map(|&i| format!("[[group]] primary = \"{}\"", c.groups[i].primary))
                .collect();
            all.extend(
                lxcs.iter()
                    .map(|&i| format!("[[lxc]] vmid = {} ({})", c.lxc[i].vmid, c.lxc[i].name)),
            );
            bail!(
                "{}: --group {want} is ambiguous: it names {}; give the full name (`lxc:NAME` for a container) or, for a container, its vmid",
                path.display(),
                all.join(" and ")
            );
        }
    }
    let mut known: Vec<String> = c.groups.iter().map(|g| g.primary.to_string()).collect();
    known.extend(
        c.lxc
            .iter()
            .map(|l| format!("{} (vmid {}, {})", l.name, l.vmid, l.mode.as_str())),
    );
    bail!(
        "{}: --group {want}: no [[group]] with that primary and no [[lxc]] with that name or vmid (groups: {})",
        path.display(),
        if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        }
    )
}

/// The i-th `[[lxc]]`, if it clones. The LXC machine measures a container as its
/// share of its own cores, so one instance is one unit of demand (`vcpus = 1`).
fn lxc(path: &Path, c: &Config, i: usize, want: &str) -> anyhow::Result<Picked> {
    let l = &c.lxc[i];
    if l.mode == Mode::Vertical {
        bail!(
            "{}: --group {want}: [[lxc]] vmid {} is vertical (mode = \"vertical\"); simulate and tune model the horizontal engine (clones), not resizes",
            path.display(),
            l.vmid
        );
    }
    if l.mode == Mode::VerticalThenHorizontal {
        eprintln!(
            "note: [[lxc]] vmid {} is vertical-then-horizontal; only its clones are modelled (the resizes before the first clone are not)",
            l.vmid
        );
    }
    Ok(Picked {
        name: l.name.clone(),
        policy: Policy {
            vcpus: 1,
            vcpus_fixed: false,
            ..l.policy.clone()
        },
        section: Section::Lxc(i),
    })
}
