// Every link in the READMEs (root, CONTRIBUTING.md, examples/, every package, docs/) must reach a file
// or folder of this repository that exists, and a #heading that exists in it. A package README
// is read on the npm registry page, where a relative link leads nowhere: there every link into
// the repository must be absolute (https://github.com/txbox/txbox/blob/main/<path>).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))
const REPO = /^https:\/\/github\.com\/txbox\/txbox\/(blob|tree)\/main\/([^#?]*)(?:#(.*))?$/
const packageReadmes = readdirSync(join(root, 'packages'))
  .map((name) => join('packages', name, 'README.md'))
  .filter((path) => existsSync(join(root, path)))
const docs = readdirSync(join(root, 'docs'))
  .filter((name) => name.endsWith('.md'))
  .map((name) => join('docs', name))
const readmes = ['README.md', 'CONTRIBUTING.md', 'examples/README.md', ...packageReadmes, ...docs].filter(
  (path) => existsSync(join(root, path)),
)

// GitHub's heading ids: lower case, punctuation other than '-' and '_' removed, spaces to '-'.
const slug = (heading) =>
  heading
    .toLowerCase()
    .replace(/`/g, '')
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-')
const anchorsOf = (path) =>
  new Set(
    readFileSync(path, 'utf8')
      .replace(/^```[\s\S]*?^```$/gm, '')
      .split('\n')
      .filter((line) => /^#{1,6} /.test(line))
      .map((line) => slug(line.replace(/^#+ /, '').trim())),
  )

const problems = []
let checked = 0
for (const readme of readmes) {
  const text = readFileSync(join(root, readme), 'utf8').replace(/^```[\s\S]*?^```$/gm, '')
  const isPackage = readme.startsWith('packages/')
  for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    checked++
    let path
    let anchor
    const repo = REPO.exec(target)
    if (repo) {
      path = join(root, decodeURIComponent(repo[2]))
      anchor = repo[3]
    } else if (/^[a-z]+:/i.test(target)) {
      if (/github\.com\/txbox\/txbox/.test(target))
        problems.push(`${readme}: ${target} is not a blob/tree link on main`)
      continue // another site: not checked here
    } else if (target.startsWith('#')) {
      path = join(root, readme)
      anchor = target.slice(1)
    } else {
      if (isPackage) {
        problems.push(
          `${readme}: relative link ${target} does not work on npm; use https://github.com/txbox/txbox/blob/main/...`,
        )
        continue
      }
      const [file, hash] = target.split('#')
      path = join(root, dirname(readme), decodeURIComponent(file))
      anchor = hash
    }
    if (!existsSync(path)) {
      problems.push(`${readme}: ${target} points at ${relative(root, path)}, which does not exist`)
      continue
    }
    if (anchor && statSync(path).isFile() && path.endsWith('.md') && !anchorsOf(path).has(anchor))
      problems.push(
        `${readme}: ${target} names a heading #${anchor} that ${relative(root, path)} does not have`,
      )
  }
}
if (problems.length > 0) {
  console.error(`[readme-links] ${problems.length} broken link(s):\n${problems.join('\n')}`)
  process.exit(1)
}
console.log(`[readme-links] ${checked} links in ${readmes.length} READMEs all reach what they name`)
