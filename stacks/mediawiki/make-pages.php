<?php
/**
 * Creates Page_1 .. Page_N for the vpath MediaWiki stack (run by stack.sh pages, as a MediaWiki maintenance
 * script). Page_K's length varies with K (about 0.5 to 20 KB of wikitext), and each page transcludes
 * Template:Box, links to a few "Topic" pages (some exist, some are red links) and sits in a category, so a view
 * that parses does real database work. No page links to another Page_M: a query or cache key of Page_K's view
 * that names Page_M is then a wrong stitch, never the page's own content.
 */

require_once '/usr/share/mediawiki/maintenance/Maintenance.php';

use MediaWiki\MediaWikiServices;

class VpathMakePages extends Maintenance {
	public function __construct() {
		parent::__construct();
		$this->addDescription( 'Create Page_1 .. Page_N for the vpath stack' );
		$this->addOption( 'pages', 'How many pages', false, true );
	}

	private function save( $user, string $name, string $text ): bool {
		$text = rtrim( $text ); // MediaWiki stores text without trailing whitespace
		$title = Title::newFromText( $name );
		$page = MediaWikiServices::getInstance()->getWikiPageFactory()->newFromTitle( $title );
		$content = ContentHandler::makeContent( $text, $title );
		$old = $page->getContent();
		if ( $old && $old->equals( $content ) ) {
			return false;
		}
		$status = $page->doUserEditContent( $content, $user, 'vpath stack page', EDIT_SUPPRESS_RC );
		if ( !$status->isOK() ) {
			$this->fatalError( "saving $name failed: " . $status->getWikiText() );
		}
		return true;
	}

	public function execute() {
		$n = (int)$this->getOption( 'pages', 100 );
		$user = User::newSystemUser( 'VpathBot', [ 'steal' => true ] );
		$this->save( $user, 'Template:Box', "{| class=\"wikitable\"\n|+ {{{title|Box}}}\n|-\n" .
			"| {{{body|}}}\n|-\n| ''kind:'' {{{kind|none}}}\n|}\n[[Category:Boxed]]\n" );
		for ( $t = 0; $t < 20; $t += 2 ) {
			$this->save( $user, "Topic $t", "Topic $t is an existing topic page.\n[[Category:Topics]]\n" );
		}
		$words = explode( ' ', 'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike ' .
			'november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu' );
		$created = 0;
		for ( $k = 1; $k <= $n; $k++ ) {
			// 1 .. 40 paragraphs of ~480 bytes, spread over K so that neighbours differ in length
			$paras = 1 + ( $k * 37 ) % 40;
			$text = "{{Box|title=Entry $k|kind=group " . ( $k % 5 ) . "|body=This is entry number $k.}}\n";
			$text .= "'''Entry $k''' links to [[Topic " . ( $k % 20 ) . "]] and [[Topic " . ( ( $k * 7 ) % 20 ) .
				"]] and to [https://example.org/entry/$k an external site].\n\n";
			for ( $p = 0; $p < $paras; $p++ ) {
				if ( $p % 8 == 0 ) {
					$text .= "== Section " . ( $p / 8 + 1 ) . " ==\n";
				}
				$line = '';
				for ( $w = 0; $w < 80; $w++ ) {
					$line .= $words[( $k * 13 + $p * 7 + $w * 3 ) % count( $words )] . ' ';
				}
				$text .= trim( $line ) . ". See [[Topic " . ( ( $k + $p ) % 20 ) . "]].\n\n";
			}
			$text .= "[[Category:Group " . ( $k % 5 ) . "]]\n";
			if ( $this->save( $user, "Page_$k", $text ) ) {
				$created++;
			}
		}
		$this->output( "$n pages (created or changed: $created)\n" );
	}
}

$maintClass = VpathMakePages::class;
require_once RUN_MAINTENANCE_IF_MAIN;
